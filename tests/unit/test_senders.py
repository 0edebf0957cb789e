"""Sender policy: allowed-sender patterns, the From address, matching (DESIGN §3)."""

import re

import pytest

from domain.errors import RejectedMessage
from domain.senders import is_allowed, normalize_domain, normalize_sender_pattern, sender_address

# --- normalize_sender_pattern ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("User@Example.COM", "user@example.com"),
        ("Example.com", "example.com"),
        ("*.Example.com", "*.example.com"),
        ("  orders@partner.ch  ", "orders@partner.ch"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("*.Bücher.example", "*.xn--bcher-kva.example"),
        ("Müller@Bücher.example", "müller@xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("example.com.", "example.com"),
        ("first.last+tag@sub.example.org", "first.last+tag@sub.example.org"),
        # IDNA2008 / UTS #46 non-transitional: ß is kept, not folded to "ss" (DESIGN §3)
        ("Straße.example", "xn--strae-oqa.example"),
        ("strasse.example", "strasse.example"),
        ("*.straße.example", "*.xn--strae-oqa.example"),
        ("Orders@STRAẞE.example", "orders@xn--strae-oqa.example"),  # capital sharp s maps to ß
        ("xn--strae-oqa.example", "xn--strae-oqa.example"),
        # mapping still applies: case, full-width and ideographic full stops, full-width letters
        ("B\N{FULLWIDTH FULL STOP}Example", "b.example"),
        ("bücher\N{IDEOGRAPHIC FULL STOP}example", "xn--bcher-kva.example"),
        ("\N{FULLWIDTH LATIN CAPITAL LETTER P}artner.example", "partner.example"),
    ],
)
def test_given_a_valid_entry_when_normalised_then_lower_case_and_idna(entry: str, expected: str) -> None:
    assert normalize_sender_pattern(entry) == expected


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("a@", "no domain"),
        ("@x.com", "nothing before"),
        ("*@x.com", "just the domain"),
        ("x", "neither an e-mail address nor a domain"),
        ("user @example.com", "space"),
        ("exa mple.com", "space"),
        ("*.com", "top-level domain"),
        ("*", "'*' is only allowed"),
        ("a@b@example.com", "more than one"),
        ("ex*ample.com", "'*' is only allowed"),
        ("*.*.example.com", "'*' is only allowed"),
        ("user@localhost", "must contain a dot"),
        ("-bad.example.com", "letters, digits"),
        ("bad_.example.com", "letters, digits"),
        ("example..com", "empty label"),
        ("<user@example.com>", "not allowed in an e-mail address"),
        ('"quoted"@example.com', "not allowed in an e-mail address"),
        ("user@[192.0.2.1]", "letters, digits"),
        (
            "\N{SNOWMAN}.example",
            "'\N{SNOWMAN}.example': the domain '\N{SNOWMAN}.example' is not a valid international",
        ),
        ("orders@\N{SNOWMAN}.example", "not a valid international domain name (IDNA2008)"),
        ("*.a\N{ZERO WIDTH JOINER}b.example", "not a valid international domain name (IDNA2008)"),
        ("xn--zz.example", "not a valid international domain name (IDNA2008)"),
    ],
)
def test_given_an_invalid_entry_when_normalised_then_value_error_says_why(entry: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        normalize_sender_pattern(entry)


def test_given_a_domain_of_264_characters_when_normalised_then_refused() -> None:
    with pytest.raises(ValueError, match="longer than 253"):
        normalize_domain(".".join(["a" * 60] * 4) + ".example.com")


# --- sender_address -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("alice@example.org", "alice@example.org"),
        ("Alice <Alice@Example.ORG>", "alice@example.org"),
        ('"Smith, Alice" <alice@example.org>', "alice@example.org"),
        ("=?utf-8?q?J=C3=B8rn?= <jorn@example.no>", "jorn@example.no"),
        ("Alice <alice@example.org> (the boss)", "alice@example.org"),
        ("Müller <müller@bücher.example>", "müller@xn--bcher-kva.example"),
        ("<orders@partner.ch>", "orders@partner.ch"),
        ("orders@partner.ch.", "orders@partner.ch"),
        ("Straße <info@Straße.example>", "info@xn--strae-oqa.example"),
        ("info@strasse.example", "info@strasse.example"),
        ("info@Bücher\N{FULLWIDTH FULL STOP}Example", "info@xn--bcher-kva.example"),
    ],
)
def test_given_one_plain_address_when_parsed_then_lower_case_idna(value: str, expected: str) -> None:
    assert sender_address([value]) == expected


def test_given_a_display_name_holding_an_address_when_parsed_then_the_real_address_counts() -> None:
    # Given a display name that looks like an allowed partner
    value = '"boss@partner.ch" <attacker@evil.com>'
    # When parsed
    result = sender_address([value])
    # Then the angle-bracket address decides
    assert result == "attacker@evil.com"


@pytest.mark.parametrize(
    ("from_values", "reason"),
    [
        ([], "no From header"),
        (["a@example.com", "b@example.com"], "2 From headers"),
        (["a@example.com, b@example.com"], "2 addresses"),
        (["Mikel <test@lindsaar.net>, jack@lindsar.com"], "2 addresses"),
        (["friends: a@example.com;"], "group"),
        (["undisclosed-recipients:;"], "group"),
        (["boss@partner.ch <attacker@evil.com>"], "cannot be parsed"),
        (["a@b.com <c@d.com>"], "cannot be parsed"),
        (["tim@powerupdev.com concierge@powerupdev.com"], "cannot be parsed"),
        (["=?utf-8?q?boss@partner.ch?= <x@evil.com>"], "cannot be parsed"),
        (["john"], "no '@'"),
        (["<>"], "cannot be parsed"),
        ([""], "empty"),
        (["   "], "empty"),
        (["a@b@c.com"], "cannot be parsed"),
        (["Big Bug bb@bug.com"], "spaces"),
        (["user@[192.0.2.1]"], "cannot be parsed"),
        (["user@exa_mple.com"], "invalid domain"),
        (["user@\N{SNOWMAN}.example"], "not a valid international domain name (IDNA2008)"),
        (["user@xn---bbk.example"], "not the canonical Punycode encoding"),
    ],
)
def test_given_not_exactly_one_plain_address_when_parsed_then_rejected(
    from_values: list[str], reason: str
) -> None:
    with pytest.raises(RejectedMessage) as caught:
        sender_address(from_values)
    assert reason in str(caught.value)


# --- is_allowed -----------------------------------------------------------------------------

PATTERNS = ["orders@partner.ch", "example.com", "*.example.org"]


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("orders@partner.ch", True),
        ("other@partner.ch", False),
        ("anyone@example.com", True),
        ("anyone@mail.example.com", False),  # a plain domain does not cover its subdomains
        ("anyone@badexample.com", False),
        ("anyone@mail.example.org", True),
        ("anyone@a.b.example.org", True),
        ("anyone@example.org", False),  # the wildcard does not cover the domain itself
        ("anyone@badexample.org", False),
        ("anyone@example.org.evil.net", False),
        ("ORDERS@PARTNER.CH", True),
        ("not-an-address", False),
    ],
)
def test_given_patterns_when_matching_then_exact_domain_and_subdomain_rules(
    address: str, allowed: bool
) -> None:
    assert is_allowed(address, PATTERNS) is allowed


def test_given_no_patterns_when_matching_then_nobody_is_allowed() -> None:
    assert is_allowed("orders@partner.ch", []) is False


def test_given_an_idna_pattern_when_an_international_sender_writes_then_allowed() -> None:
    pattern = normalize_sender_pattern("bücher.example")
    sender = sender_address(["Bücherei <info@Bücher.example>"])
    assert is_allowed(sender, [pattern])


def test_given_a_huge_from_header_when_parsed_then_rejected_quickly_with_a_short_reason() -> None:
    with pytest.raises(RejectedMessage, match="longer than 2000 characters"):
        sender_address(["@" * 1_000_000])


def test_given_an_address_beyond_254_characters_when_parsed_then_rejected() -> None:
    with pytest.raises(RejectedMessage, match="longer than 254 characters"):
        sender_address(["a" * 250 + "@example.com"])


def test_given_a_long_unparsable_from_when_rejected_then_the_reason_quotes_only_its_start() -> None:
    with pytest.raises(RejectedMessage) as caught:
        sender_address(["x" * 500 + " <a@example.com> <b@example.com>"])
    assert len(str(caught.value)) < 200


# --- IDNA2008: distinct domains stay distinct in the allow-list ----------------------------


@pytest.mark.parametrize(
    ("sender", "entry", "allowed"),
    [
        ("info@straße.example", "straße.example", True),
        ("info@Straße.example", "xn--strae-oqa.example", True),
        ("info@xn--strae-oqa.example", "Straße.example", True),
        ("info@strasse.example", "straße.example", False),
        ("info@straße.example", "strasse.example", False),
        ("info@mail.straße.example", "*.straße.example", True),
        ("info@mail.strasse.example", "*.straße.example", False),
        ("orders@straße.example", "Orders@Straße.example", True),
        ("orders@strasse.example", "orders@straße.example", False),
    ],
)
def test_given_sharp_s_when_matching_then_strasse_is_another_domain(
    sender: str, entry: str, allowed: bool
) -> None:
    # Given a From address and an allow-list entry, each as the channel stores it
    address = sender_address([sender])
    pattern = normalize_sender_pattern(entry)
    # When matched - also when the raw entry is given - then ß and ss never meet
    assert is_allowed(address, [pattern]) is allowed
    assert is_allowed(address, [entry]) is allowed
    assert is_allowed(sender, [entry]) is allowed


def test_given_unnormalised_patterns_when_matching_then_both_sides_are_normalised_alike() -> None:
    assert is_allowed("Orders@Bücher\N{FULLWIDTH FULL STOP}Example", ["  ORDERS@bücher.example "])
    assert is_allowed("a@x.example", ["x.example."])
    assert not is_allowed("@x.example", ["x.example"])  # no local part: no address
    assert not is_allowed("a@\N{SNOWMAN}.example", ["\N{SNOWMAN}.example"])  # invalid on both sides
