"""IDNA2008 / UTS #46 non-transitional processing of sender domains and allow-list entries (DESIGN §3),
and the log line that shows the operator an entry in its normalised form.

Python's built-in ``"idna"`` codec is IDNA 2003: it folds ``ß`` to ``ss``, final to ordinary sigma and drops
ZWJ/ZWNJ, so two different domains would become one. These tests pin the difference.
"""

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from domain.channel import Channel, load_channel
from domain.errors import RejectedMessage
from domain.senders import (
    InvalidDomain,
    is_allowed,
    normalization_notes,
    normalize_domain,
    normalize_sender_pattern,
    sender_address,
)
from service.poll import poll_channel
from service.ports import Ports

FINAL_SIGMA = "\N{GREEK SMALL LETTER FINAL SIGMA}"
SIGMA = "\N{GREEK SMALL LETTER SIGMA}"
CAPITAL_SIGMA = "\N{GREEK CAPITAL LETTER SIGMA}"
BOLO = (  # "bolo", Greek: with a final sigma it is "bolos"
    "\N{GREEK SMALL LETTER BETA}\N{GREEK SMALL LETTER OMICRON WITH TONOS}"
    "\N{GREEK SMALL LETTER LAMDA}\N{GREEK SMALL LETTER OMICRON}"
)
ZWJ = "\N{ZERO WIDTH JOINER}"
ZWNJ = "\N{ZERO WIDTH NON-JOINER}"
# Devanagari KA, VIRAMA, (ZWJ), SSA: a joiner after a virama is valid (RFC 5892 CONTEXTJ)
KA_VIRAMA = "\N{DEVANAGARI LETTER KA}\N{DEVANAGARI SIGN VIRAMA}"
SSA = "\N{DEVANAGARI LETTER SSA}"
# Persian "nameh-ye": HEH (dual joining), ZWNJ, ALEF (right joining), FARSI YEH - the UTS #46 example
NAMEH = "\N{ARABIC LETTER NOON}\N{ARABIC LETTER ALEF}\N{ARABIC LETTER MEEM}\N{ARABIC LETTER HEH}"
AY = "\N{ARABIC LETTER ALEF}\N{ARABIC LETTER FARSI YEH}"


# --- distinct domains stay distinct ---------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("straße.example", "xn--strae-oqa.example"),
        ("strasse.example", "strasse.example"),
        (f"{BOLO}{FINAL_SIGMA}.example", "xn--nxasmm1c.example"),
        (f"{BOLO}{SIGMA}.example", "xn--nxasmq6b.example"),
        (f"{BOLO.upper()}{CAPITAL_SIGMA}.example", "xn--nxasmq6b.example"),  # capital sigma maps to sigma
        (f"{KA_VIRAMA}{ZWJ}{SSA}.example", "xn--11b2ezcw70k.example"),
        (f"{KA_VIRAMA}{SSA}.example", "xn--11b2ezc.example"),
        (f"{NAMEH}{ZWNJ}{AY}.example", "xn--mgba3gch31f060k.example"),
        (f"{NAMEH}{AY}.example", "xn--mgba3gch31f.example"),
    ],
)
def test_given_deviation_characters_when_normalised_then_kept_non_transitionally(
    domain: str, expected: str
) -> None:
    assert normalize_domain(domain) == expected


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("straße.example", "strasse.example"),
        (f"{BOLO}{FINAL_SIGMA}.example", f"{BOLO}{SIGMA}.example"),
        (f"{KA_VIRAMA}{ZWJ}{SSA}.example", f"{KA_VIRAMA}{SSA}.example"),
        (f"{NAMEH}{ZWNJ}{AY}.example", f"{NAMEH}{AY}.example"),
    ],
)
def test_given_two_domains_idna2003_would_fold_when_used_then_they_never_match(one: str, other: str) -> None:
    # Given the domains differ only in sharp s/ss, final/ordinary sigma, ZWJ or ZWNJ
    assert normalize_domain(one) != normalize_domain(other)
    # Then neither a domain entry, nor a wildcard, nor an address entry of one admits the other
    for entry, sender in ((one, other), (other, one)):
        address = sender_address([f"orders@{sender}"])
        assert not is_allowed(address, [normalize_sender_pattern(entry)])
        assert not is_allowed(
            sender_address([f"orders@mail.{sender}"]), [normalize_sender_pattern(f"*.{entry}")]
        )
        assert not is_allowed(address, [normalize_sender_pattern(f"orders@{entry}")])
        assert is_allowed(address, [normalize_sender_pattern(sender)])


# --- mapping still applies ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("Partner.EXAMPLE", "partner.example"),
        ("STRASSE.example", "strasse.example"),
        ("Straße.Example", "xn--strae-oqa.example"),
        ("bücher\N{FULLWIDTH FULL STOP}example", "xn--bcher-kva.example"),
        ("bücher\N{IDEOGRAPHIC FULL STOP}example", "xn--bcher-kva.example"),
        ("bücher\N{HALFWIDTH IDEOGRAPHIC FULL STOP}example", "xn--bcher-kva.example"),
        ("partner\N{FULLWIDTH FULL STOP}example", "partner.example"),
        ("\N{FULLWIDTH LATIN CAPITAL LETTER B}ücher.example", "xn--bcher-kva.example"),
        ("BU\N{COMBINING DIAERESIS}CHER.example", "xn--bcher-kva.example"),  # NFC after case folding
        ("bücher.example\N{FULLWIDTH FULL STOP}", "xn--bcher-kva.example"),  # a trailing (wide) dot
        ("XN--STRAE-OQA.example", "xn--strae-oqa.example"),
        ("ab--cd.example", "ab--cd.example"),  # an ASCII name is only lower-cased, as before
    ],
)
def test_given_case_width_and_dots_when_normalised_then_mapped(domain: str, expected: str) -> None:
    assert normalize_domain(domain) == expected
    assert normalize_domain(expected) == expected  # the normalised form is a fixed point


def test_given_a_mapped_sender_and_entry_when_matched_then_allowed() -> None:
    address = sender_address(["Info <INFO@Bücher\N{FULLWIDTH FULL STOP}EXAMPLE>"])
    assert address == "info@xn--bcher-kva.example"
    assert is_allowed(
        address, [normalize_sender_pattern("*.other.example"), normalize_sender_pattern("BÜCHER.example")]
    )


# --- invalid IDNA2008 names are refused -----------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "detail"),
    [
        ("\N{SNOWMAN}.example", "U+2603"),  # a symbol: valid in IDNA 2003, not in IDNA2008
        (f"a{ZWJ}b.example", "Joiner U+200D"),  # a joiner out of context (CONTEXTJ)
        (f"a{ZWNJ}b.example", "Joiner U+200C"),
        ("\N{COMBINING ACUTE ACCENT}a.example", "combining"),
        ("\N{DIGIT ONE FULL STOP}example", "U+2488"),  # UTS #46 disallows it
        ("xn--zz.example", "Invalid A-label"),
        ("xn---bbk.example", "not the canonical Punycode encoding"),  # a fake A-label
        ("xn--ss-xxx.example", "IDNA2008"),
        (f"1abc.{NAMEH}{AY}.example", "directionality"),  # Bidi Rule in a right-to-left domain
        ("ü" * 64 + ".example", "label longer than 63 characters"),
    ],
)
def test_given_an_invalid_idna2008_name_when_normalised_then_refused_with_the_reason(
    domain: str, detail: str
) -> None:
    with pytest.raises(InvalidDomain) as caught:
        normalize_domain(domain)
    message = str(caught.value)
    assert message.startswith(f"the domain {domain!r} ")
    assert detail.lower() in message.lower()


def test_given_an_invalid_idna2008_entry_when_normalised_then_the_error_names_the_entry() -> None:
    with pytest.raises(
        ValueError, match=r"^'\*\.☃\.example': the domain '☃\.example' is not a valid international"
    ):
        normalize_sender_pattern("*.\N{SNOWMAN}.example")


def test_given_an_invalid_idna2008_sender_domain_when_parsed_then_rejected_with_the_reason() -> None:
    with pytest.raises(RejectedMessage) as caught:
        sender_address([f"Joiner <orders@a{ZWJ}b.example>"])
    reason = str(caught.value)
    assert reason.startswith("the From address has an invalid domain: ")
    assert "(it is not a valid international domain name (IDNA2008): Joiner U+200D" in reason


def test_given_a_very_long_unicode_domain_when_normalised_then_refused_as_too_long() -> None:
    with pytest.raises(InvalidDomain, match="longer than 253 characters"):
        normalize_domain(".".join(["bücher"] * 300))


# --- normalization_notes --------------------------------------------------------------------


def test_given_entries_when_noted_then_only_those_that_change_beyond_case_and_blanks() -> None:
    notes = normalization_notes(
        [
            "Partner.CH",  # case only: not noted
            "  orders@partner.ch ",  # whitespace only: not noted
            "Straße.example",
            "*.Bücher.example",
            "Müller@Bücher.example",
            "Müller@partner.ch",  # a Unicode local part is kept as it is
            "partner.example.",
            "b\N{FULLWIDTH FULL STOP}example",
            "Straße.example",  # a repeated entry is noted once
        ]
    )
    assert notes == [
        ("Straße.example", "xn--strae-oqa.example"),
        ("*.Bücher.example", "*.xn--bcher-kva.example"),
        ("Müller@Bücher.example", "müller@xn--bcher-kva.example"),
        ("partner.example.", "partner.example"),
        ("b\N{FULLWIDTH FULL STOP}example", "b.example"),
    ]


def test_given_a_dynamodb_string_set_when_noted_then_sorted_by_entry() -> None:
    assert normalization_notes({"straße.example", "bücher.example", "plain.example"}) == [
        ("bücher.example", "xn--bcher-kva.example"),
        ("straße.example", "xn--strae-oqa.example"),
    ]


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "straße.example",
        42,
        {"straße.example": 1},
        [],
        [None, 7, "", "☃.example", "x", "*.com", "a@b@c.example"],
    ],
)
def test_given_no_list_or_only_bad_entries_when_noted_then_nothing_and_no_exception(raw: object) -> None:
    assert normalization_notes(raw) == []


# --- the poll shows the operator the normalised entries --------------------------------------

ITEM: dict[str, Any] = {
    "channel_id": "acme",
    "active": False,
    "subject_keyword": "LetterShop",
    "pop3_host": "pop.example",
    "pop3_username": "acme",
    "pop3_password_secret": "lettershop/acme/pop3",
    "sender_address": "lettershop@operator.example",
    "smtp_host": "smtp.example",
}


class ItemOnly:
    """A wiring with one channel item and no outside world (the channel is inactive)."""

    def __init__(self, item: Mapping[str, Any]) -> None:
        self.item = item

    def channel_item(self, channel_id: str) -> Mapping[str, Any] | None:
        return self.item

    def ports(self, channel: Channel) -> Ports:
        raise AssertionError("an inactive channel needs no ports")


def poll_logs(caplog: pytest.LogCaptureFixture, allowed_senders: object) -> list[Any]:
    item = {**ITEM, "allowed_senders": allowed_senders}
    result = poll_channel(
        "acme",
        ItemOnly(item),
        now=lambda: datetime(2025, 1, 1, tzinfo=UTC),
        time_left=lambda: 60.0,
        lease_seconds=60,
    )
    assert result.status == "inactive"
    return [record for record in caplog.records if "normalised form" in record.getMessage()]


def test_given_entries_that_change_when_polled_then_one_info_line_shows_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a channel item typed with a Unicode domain (a DynamoDB string set)
    [logged] = poll_logs(caplog, {"Straße.example", "orders@Partner.example"})
    # Then one INFO line shows it in the form it is compared in
    assert logged.levelname == "INFO"
    assert logged.getMessage() == (
        "allowed_senders entries are used in their normalised form: "
        "'Straße.example' -> 'xn--strae-oqa.example'"
    )
    assert logged.allowed_senders_normalised == {"Straße.example": "xn--strae-oqa.example"}
    # And the channel itself holds only the normalised list
    assert load_channel({**ITEM, "allowed_senders": ["Straße.example"]}).allowed_senders == [
        "xn--strae-oqa.example"
    ]


def test_given_entries_that_only_change_case_when_polled_then_no_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert poll_logs(caplog, ["Partner.Example", " orders@partner.ch "]) == []
