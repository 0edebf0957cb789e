"""Header screening: parsing, subject decoding, recognition, automatic messages, authentication."""

import random

import pytest

from domain.inbound import (
    Headers,
    authentication_reason,
    automatic_reason,
    is_recognized,
    parse_headers,
    rejection_reason,
)


def headers(*lines: str, body: str = "") -> Headers:
    raw = "\r\n".join(lines).encode("utf-8") + b"\r\n\r\n" + body.encode("utf-8")
    return parse_headers(raw)


# --- parse_headers --------------------------------------------------------------------------


def test_given_a_whole_message_when_parsed_then_reading_stops_at_the_first_empty_line() -> None:
    parsed = parse_headers(b"From: a@example.com\r\nSubject: hi\r\n\r\nX-Not-A-Header: body\r\n")
    assert parsed.raw == b"From: a@example.com\r\nSubject: hi\r\n\r\n"
    assert parsed.get_all("X-Not-A-Header") == []
    assert parsed.get_all("subject") == ["hi"]


def test_given_folded_and_repeated_headers_when_read_then_unfolded_in_order() -> None:
    parsed = parse_headers(b"Received: one\r\n\tfolded\r\nReceived: two\r\nSubject:  spaced  \r\n\r\n")
    assert parsed.get_all("RECEIVED") == ["one\tfolded", "two"]
    assert parsed.get("Subject") == "spaced"
    assert parsed.get("Missing") is None


def test_given_lf_only_and_an_mbox_from_line_when_parsed_then_headers_are_found() -> None:
    parsed = parse_headers(b"From someone@example.com Sun May  8 19:07:09 2005\nFrom: a@example.com\n\nbody")
    assert parsed.get_all("From") == ["a@example.com"]


def test_given_8bit_headers_when_read_then_utf8_else_windows_1252() -> None:
    parsed = parse_headers("Subject: Grüße\r\n".encode() + b"X-Legacy: caf\xe9 \x80\r\n\r\n")
    assert parsed.subject == "Grüße"
    assert parsed.get("X-Legacy") == "café €"


def test_given_a_line_that_is_no_header_when_parsed_then_the_body_starts_there() -> None:
    parsed = parse_headers(b"Subject: a\r\nthis is not a header\r\nFrom: hidden@example.com\r\n\r\n")
    assert parsed.get_all("From") == []
    assert parsed.get("Subject") == "a"


@pytest.mark.parametrize(
    "raw", [b"", b"\r\n", b"\x00\x01\x02garbage", b"\xff" * 100, b" continuation only\r\n"]
)
def test_given_no_header_when_parsed_then_empty_and_no_exception(raw: bytes) -> None:
    parsed = parse_headers(raw)
    assert parsed.fields == ()
    assert parsed.subject == ""
    assert parsed.message_id is None
    assert parsed.references is None


def test_given_random_bytes_when_parsed_then_never_raises() -> None:
    generator = random.Random(7)  # noqa: S311 - reproducible test data, not cryptography
    alphabet = b'=?:;<>"\\ \t\r\nabcQB@.\x80\xff'
    for _ in range(500):
        raw = bytes(generator.choice(alphabet) for _ in range(generator.randint(0, 200)))
        parsed = parse_headers(b"Subject: " + raw)
        assert isinstance(parsed.subject, str)
        assert "\n" not in parsed.subject
        automatic_reason(parsed)
        rejection_reason(
            parsed,
            allowed_senders=["example.com"],
            require_authenticated_sender=True,
            trusted_authserv_ids=["mx"],
        )


# --- subject --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw_subject", "expected"),
    [
        ("plain text", "plain text"),
        ("=?UTF-8?Q?Letter?= =?UTF-8?Q?Shop?=", "LetterShop"),
        ("=?UTF-8?Q?Letter?=\r\n =?UTF-8?Q?Shop?= orders", "LetterShop orders"),
        ("=?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus?= Bern", "Grüße aus Bern"),
        ("=?ISO-8859-1?Q?Eelanal=FC=FCsi_p=E4ring?=", "Eelanalüüsi päring"),
        ("=?utf-8?b?44Gm44GZ?= =?utf-8?b?44Go?=", "てすと"),
        ("=?utf-8?b?4oKs?= =?utf-8?b??=", "€"),
        ("=?utf-8?B?4g==?= =?utf-8?B?gqw=?=", "€"),  # one character split over two words
        ("=?NONE?B?VEVTVA=?=", "TEST"),  # unknown charset, bad padding
        ("=?utf-8?B?!!!bad?=", "m\ufffd"),  # junk dropped, the rest decoded as far as it goes
        ("=?x-unknown?Q?caf=E9?=", "café"),
        ("=?utf-8*en?Q?language_tag?=", "language tag"),
        ("Re: =?utf-8?q?line=0Abreak=0D=0A?= and\ttab", "Re: line break and tab"),
        ("=?utf-8?q?unterminated", "=?utf-8?q?unterminated"),
        ("=?rot13?q?abc?=", "abc"),  # not a text encoding: fallback
    ],
)
def test_given_an_encoded_subject_when_read_then_decoded_on_one_line(raw_subject: str, expected: str) -> None:
    assert headers(f"Subject: {raw_subject}").subject == expected


def test_given_no_subject_when_read_then_empty_string() -> None:
    assert headers("From: a@example.com").subject == ""


# --- message_id / references ----------------------------------------------------------------


def test_given_message_id_and_references_when_replying_then_references_chain_grows() -> None:
    parsed = headers("Message-ID: <c@example.com>", "References: <a@example.com>\r\n <b@example.com>")
    assert parsed.message_id == "<c@example.com>"
    assert parsed.references == "<a@example.com> <b@example.com> <c@example.com>"


def test_given_only_in_reply_to_when_replying_then_it_stands_in_for_references() -> None:
    parsed = headers("Message-ID: <c@example.com>", "In-Reply-To: <b@example.com> (comment)")
    assert parsed.references == "<b@example.com> <c@example.com>"


def test_given_a_bare_message_id_when_read_then_bracketed() -> None:
    assert headers("Message-ID: abc@example.com").message_id == "<abc@example.com>"


@pytest.mark.parametrize("value", ["", "not an id", "<>", "<a b@c>"])
def test_given_an_unusable_message_id_when_read_then_none(value: str) -> None:
    parsed = headers(f"Message-ID: {value}")
    assert parsed.message_id is None
    assert parsed.references is None


def test_given_a_long_reference_chain_when_replying_then_first_and_latest_are_kept() -> None:
    ids = " ".join(f"<{n}@example.com>" for n in range(40))
    parsed = headers(f"References: {ids}", "Message-ID: <new@example.com>")
    kept = (parsed.references or "").split()
    assert len(kept) == 20
    assert kept[0] == "<0@example.com>"
    assert kept[-2:] == ["<39@example.com>", "<new@example.com>"]


# --- is_recognized --------------------------------------------------------------------------


def test_given_an_exclusive_account_when_any_message_arrives_then_recognised() -> None:
    assert is_recognized("", exclusive_account=True, keyword=None)


@pytest.mark.parametrize(
    ("subject", "keyword", "expected"),
    [
        ("Orders for LETTERSHOP today", "LetterShop", True),
        ("Orders for lettershop", "  LetterShop ", True),
        ("Letter Shop", "LetterShop", False),
        ("Lettershop   import", "lettershop import", True),
        ("STRASSE", "straße", True),  # casefold
        ("\uff2c\uff45\uff54\uff54\uff45\uff52\uff33\uff48\uff4f\uff50", "LetterShop", True),  # NFKC
        ("anything", None, False),
        ("anything", "   ", False),
        ("", "LetterShop", False),
    ],
)
def test_given_a_shared_account_when_matching_the_keyword_then_case_insensitive(
    subject: str, keyword: str | None, expected: bool
) -> None:
    assert is_recognized(subject, exclusive_account=False, keyword=keyword) is expected


def test_given_a_keyword_split_over_encoded_words_when_matching_then_recognised() -> None:
    parsed = headers("Subject: =?UTF-8?Q?Letter?=\r\n =?UTF-8?Q?Shop?= import")
    assert is_recognized(parsed.subject, exclusive_account=False, keyword="lettershop")


def test_given_a_raw_encoded_subject_when_matching_then_it_is_decoded_first() -> None:
    assert is_recognized("=?UTF-8?B?TGV0dGVyU2hvcA==?=", exclusive_account=False, keyword="LetterShop")


# --- automatic_reason -----------------------------------------------------------------------


def test_given_a_normal_message_when_screened_then_not_automatic() -> None:
    assert automatic_reason(headers("From: a@example.com", "Subject: hi", "Auto-Submitted: no")) is None


@pytest.mark.parametrize(
    ("header_lines", "reason"),
    [
        (
            ["Content-Type: multipart/report; report-type=delivery-status; boundary=x"],
            "bounce (multipart/report)",
        ),
        (["Content-Type: Multipart/Report"], "bounce (multipart/report)"),
        (["Return-Path: <>"], "empty return path (Return-Path: <>)"),
        (["Return-Path: < >"], "empty return path (Return-Path: <>)"),
        (["From: Mail Delivery System <MAILER-DAEMON@mx.example.com>"], "bounce (From: MAILER-DAEMON)"),
        (["Auto-Submitted: auto-replied"], "Auto-Submitted: auto-replied"),
        (["Auto-Submitted: auto-generated; owner-email=x@example.com"], "Auto-Submitted: auto-generated"),
        (["Auto-Submitted: Auto-Notified (comment)"], "Auto-Submitted: Auto-Notified"),
        (["Auto-Submitted:"], "Auto-Submitted: "),
        (["Precedence: bulk"], "Precedence: bulk"),
        (["Precedence: JUNK"], "Precedence: junk"),
        (["Precedence: list"], "Precedence: list"),
        (["X-Autoreply: yes"], "X-Autoreply: yes"),
        (["X-Autorespond: vacation"], "X-Autorespond: vacation"),
        (
            ["List-Id: Partners <partners.example.com>"],
            "mailing list (List-Id: Partners <partners.example.com>)",
        ),
    ],
)
def test_given_an_automatic_message_when_screened_then_the_reason_names_it(
    header_lines: list[str], reason: str
) -> None:
    result = automatic_reason(headers("From: a@example.com", *header_lines))
    assert result is not None
    assert result.startswith(reason)


@pytest.mark.parametrize(
    "line", ["Precedence: first-class", "Return-Path: <a@example.com>", "Auto-Submitted: No"]
)
def test_given_harmless_values_when_screened_then_not_automatic(line: str) -> None:
    assert automatic_reason(headers("From: a@example.com", line)) is None


def test_given_the_caller_knows_the_return_path_is_empty_when_screened_then_automatic() -> None:
    parsed = headers("From: a@example.com")
    assert automatic_reason(parsed, return_path_empty=True) == "empty return path (Return-Path: <>)"
    assert automatic_reason(parsed, return_path_empty=False) is None


# --- authentication_reason ------------------------------------------------------------------

TRUSTED = ["mx.lettershop.example"]


def auth(*results: str, domain: str = "partner.ch", trusted: list[str] = TRUSTED) -> str | None:
    parsed = headers(*(f"Authentication-Results: {value}" for value in results), "From: a@partner.ch")
    return authentication_reason(parsed, trusted_authserv_ids=trusted, sender_domain=domain)


def test_given_dmarc_pass_from_a_trusted_server_when_checked_then_authenticated() -> None:
    assert auth("mx.lettershop.example; dmarc=pass (p=reject) header.from=partner.ch") is None


def test_given_dmarc_pass_for_another_from_domain_when_checked_then_not_authenticated() -> None:
    assert auth("mx.lettershop.example; dmarc=pass header.from=evil.com") is not None


def test_given_no_authentication_results_when_checked_then_reason() -> None:
    assert auth() == "no Authentication-Results from a trusted server"


def test_given_only_untrusted_servers_when_checked_then_reason() -> None:
    assert auth("mx.evil.example; dmarc=pass") == "no Authentication-Results from a trusted server"


def test_given_no_trusted_ids_configured_when_checked_then_nobody_is_authenticated() -> None:
    reason = auth("mx.lettershop.example; dmarc=pass", trusted=[])
    assert reason == "no Authentication-Results from a trusted server"


def test_given_a_forged_lower_header_when_checked_then_only_the_topmost_trusted_one_counts() -> None:
    # Given our server says fail on top, and the sender wrote a "pass" with our id further down
    reason = auth(
        "mx.lettershop.example; dmarc=fail header.from=partner.ch; spf=softfail smtp.mailfrom=partner.ch",
        "mx.lettershop.example; dmarc=pass header.from=partner.ch",
    )
    # Then the forged one is ignored
    assert reason is not None
    assert "dmarc=fail" in reason
    assert "spf=softfail" in reason


def test_given_an_untrusted_header_on_top_when_checked_then_the_first_trusted_one_below_counts() -> None:
    below = "mx.lettershop.example; dmarc=pass header.from=partner.ch"
    assert auth("internal.relay; dmarc=fail", below) is None


def test_given_the_authserv_id_in_another_case_when_checked_then_trusted() -> None:
    value = "MX.LetterShop.Example 1; dmarc=pass header.from=partner.ch"
    assert auth(value, trusted=[" mx.lettershop.example "]) is None


@pytest.mark.parametrize(
    ("result", "domain", "authenticated"),
    [
        ("dkim=pass header.d=partner.ch", "partner.ch", True),
        ("dkim=pass header.d=partner.ch", "mail.partner.ch", True),  # relaxed: From is a subdomain
        ("dkim=pass header.d=mail.partner.ch", "partner.ch", True),  # and vice versa
        ("dkim=pass header.d=PARTNER.CH header.s=sel", "partner.ch", True),
        ('dkim=pass header.d="partner.ch"', "partner.ch", True),
        ("dkim=pass header.i=@mail.partner.ch", "partner.ch", True),
        ("dkim=pass header.d=evil.com", "partner.ch", False),
        ("dkim=pass header.d=notpartner.ch", "partner.ch", False),
        ("dkim=pass header.d=ch", "partner.ch", False),  # a bare TLD never aligns
        ("dkim=pass", "partner.ch", False),
        ("dkim=fail header.d=partner.ch", "partner.ch", False),
        ("spf=pass smtp.mailfrom=bounces@partner.ch", "partner.ch", True),
        ("spf=pass smtp.mailfrom=bounces.partner.ch", "partner.ch", True),
        ("spf=pass smtp.mailfrom=bounces@mailer.example", "partner.ch", False),
        ("spf=pass smtp.helo=partner.ch", "partner.ch", False),
        ("dmarc=pass", "partner.ch", False),  # no header.from: whose From did it check?
        ("dmarc=pass header.from=partner.ch", "partner.ch", True),
        ("dmarc=pass header.from=PARTNER.CH.", "partner.ch", True),
        ('dmarc=pass header.from="partner.ch"', "partner.ch", True),
        ("dmarc=pass header.from=mail.partner.ch", "partner.ch", False),  # DMARC names one domain
        ("dmarc=pass header.from=partner.ch", "mail.partner.ch", False),
        ("dmarc=pass header.from=", "partner.ch", False),
        ("dmarc=none header.from=partner.ch", "partner.ch", False),
        ("dmarc=pass header.from=straße.example", "xn--strae-oqa.example", True),
        ("dmarc=pass header.from=xn--strae-oqa.example", "Straße.example", True),
        ("dmarc=pass header.from=strasse.example", "straße.example", False),  # ß is not ss
        ("dmarc=pass header.from=straße.example", "strasse.example", False),
        ("dkim=pass header.d=xn--bcher-kva.example", "bücher.example", True),
        ("arc=pass", "partner.ch", False),
        ("none", "partner.ch", False),
    ],
)
def test_given_results_when_checking_alignment_then_relaxed_by_suffix(
    result: str, domain: str, authenticated: bool
) -> None:
    reason = auth(f"mx.lettershop.example; {result}", domain=domain)
    assert (reason is None) is authenticated


def test_given_dmarc_pass_without_header_from_when_checked_then_refused_with_the_reason() -> None:
    # Given our trusted server reports a bare dmarc=pass (it does not say for which From domain)
    reason = auth("mx.lettershop.example; dmarc=pass; spf=none")
    # Then it vouches for nobody, and the reason says why
    assert reason == (
        "not authenticated: dmarc=pass (no header.from, so not for partner.ch), spf=none "
        "(by mx.lettershop.example)"
    )


def test_given_dmarc_pass_for_another_from_domain_when_checked_then_the_reason_names_both() -> None:
    reason = auth("mx.lettershop.example; dmarc=pass header.from=evil.com")
    assert reason == (
        "not authenticated: dmarc=pass (header.from=evil.com is not partner.ch) (by mx.lettershop.example)"
    )


def test_given_a_bare_dmarc_pass_beside_an_aligned_dkim_pass_when_checked_then_dkim_authenticates() -> None:
    assert auth("mx.lettershop.example; dmarc=pass; dkim=pass header.d=partner.ch") is None


def test_given_an_unaligned_pass_when_checked_then_the_reason_says_so() -> None:
    reason = auth("mx.lettershop.example; dkim=pass header.d=evil.com; spf=none")
    assert reason == (
        "not authenticated: dkim=pass (header.d=evil.com not aligned with partner.ch), spf=none "
        "(by mx.lettershop.example)"
    )


def test_given_comments_and_quotes_when_parsed_then_they_do_not_confuse_the_reader() -> None:
    value = (
        'mx.lettershop.example (a comment; with "dmarc=pass") ; '
        'dkim=fail (reason: "bad; sig") header.d=partner.ch; '
        "dmarc=fail (p=none dis=none) header.from=partner.ch"
    )
    reason = auth(value)
    assert reason is not None
    assert "dkim=fail" in reason
    assert "dmarc=fail" in reason


def test_given_a_header_without_results_when_checked_then_reason() -> None:
    assert auth("mx.lettershop.example; none") == (
        "not authenticated: mx.lettershop.example reports no dmarc, dkim or spf result"
    )


# --- rejection_reason -----------------------------------------------------------------------


def screen(
    *lines: str, allowed: list[str] | None = None, require_auth: bool = False
) -> tuple[str | None, ...]:
    return rejection_reason(
        headers(*lines),
        allowed_senders=["partner.ch"] if allowed is None else allowed,
        require_authenticated_sender=require_auth,
        trusted_authserv_ids=TRUSTED,
    )


def test_given_an_allowed_sender_when_screened_then_accepted() -> None:
    assert screen("From: Orders <Orders@Partner.CH>") == ("orders@partner.ch", None)


def test_given_a_stranger_when_screened_then_rejected_with_the_address() -> None:
    assert screen("From: x@evil.com") == (
        "x@evil.com",
        "sender x@evil.com is not in the allowed addresses and domains",
    )


def test_given_an_automatic_message_from_an_allowed_sender_when_screened_then_automatic_wins() -> None:
    assert screen("From: orders@partner.ch", "Auto-Submitted: auto-replied") == (
        "orders@partner.ch",
        "Auto-Submitted: auto-replied",
    )


def test_given_a_bounce_without_from_when_screened_then_automatic_comes_first() -> None:
    assert screen("Content-Type: multipart/report; boundary=x") == (None, "bounce (multipart/report)")


def test_given_two_from_headers_when_screened_then_rejected_without_sender() -> None:
    sender, reason = screen("From: orders@partner.ch", "From: x@evil.com")
    assert sender is None
    assert reason == "message has 2 From headers"


def test_given_no_allowed_senders_when_screened_then_nobody_passes() -> None:
    assert screen("From: orders@partner.ch", allowed=[])[1] is not None


def test_given_authentication_required_when_screened_then_checked_last() -> None:
    unauthenticated = screen("From: orders@partner.ch", require_auth=True)
    authenticated = screen(
        "Authentication-Results: mx.lettershop.example; dkim=pass header.d=partner.ch",
        "From: orders@partner.ch",
        require_auth=True,
    )
    bare_dmarc = screen(
        "Authentication-Results: mx.lettershop.example; dmarc=pass",
        "From: orders@partner.ch",
        require_auth=True,
    )
    stranger = screen("From: x@evil.com", require_auth=True)
    assert bare_dmarc == (
        "orders@partner.ch",
        "not authenticated: dmarc=pass (no header.from, so not for partner.ch) (by mx.lettershop.example)",
    )
    assert unauthenticated == ("orders@partner.ch", "no Authentication-Results from a trusted server")
    assert authenticated == ("orders@partner.ch", None)
    assert stranger[1] == "sender x@evil.com is not in the allowed addresses and domains"


# --- issue 10: empty return path with comments, Precedence: auto_reply ------------------------


@pytest.mark.parametrize(
    "raw_line",
    [
        b"Return-Path: <> (comment)",
        b"Return-Path:<>",
        b"Return-Path: < >",
        b"Return-Path: <>(bounce)",
        b"Return-Path: (MAILER-DAEMON) <>",
        b"Return-Path: <(nothing)>",
        b"Return-Path: <> (nested (comment) here)",
        b"Return-Path: <> (escaped \\) paren)",
        b"Return-Path: <>\t(tab)",
        b"Return-Path:\r\n\t<> (folded)",
        b"return-path: <> (any case)",
    ],
)
def test_given_an_empty_return_path_spelled_with_comments_or_blanks_when_screened_then_automatic(
    raw_line: bytes,
) -> None:
    parsed = parse_headers(b"From: orders@partner.ch\r\n" + raw_line + b"\r\n\r\n")
    assert automatic_reason(parsed) == "empty return path (Return-Path: <>)"


@pytest.mark.parametrize(
    "line",
    [
        "Return-Path: <orders@partner.ch> (comment)",
        "Return-Path: (<>) <orders@partner.ch>",
        'Return-Path: <"(x)"@partner.ch>',
        "Return-Path: <> orders@partner.ch",
        "Return-Path: <<>>",
        "Return-Path:",
    ],
)
def test_given_a_return_path_that_is_not_empty_when_screened_then_not_automatic(line: str) -> None:
    assert automatic_reason(headers("From: orders@partner.ch", line)) is None


def test_given_an_empty_return_path_with_a_comment_from_an_allowed_sender_when_screened_then_rejected() -> (
    None
):
    assert screen("From: orders@partner.ch", "Return-Path: <> (bounce)") == (
        "orders@partner.ch",
        "empty return path (Return-Path: <>)",
    )


@pytest.mark.parametrize(
    "line",
    [
        "Precedence: auto_reply",
        "Precedence: AUTO_REPLY",
        "Precedence: auto_reply (vacation)",
        "Precedence: (set by the responder) auto_reply",
    ],
)
def test_given_precedence_auto_reply_when_screened_then_automatic(line: str) -> None:
    assert automatic_reason(headers("From: orders@partner.ch", line)) == "Precedence: auto_reply"


def test_given_precedence_bulk_with_a_nested_comment_when_screened_then_automatic() -> None:
    assert automatic_reason(headers("From: a@example.com", "Precedence: bulk (news (weekly))")) == (
        "Precedence: bulk"
    )


def test_given_precedence_auto_reply_from_an_allowed_sender_when_screened_then_rejected() -> None:
    assert screen("From: orders@partner.ch", "Precedence: auto_reply") == (
        "orders@partner.ch",
        "Precedence: auto_reply",
    )


@pytest.mark.parametrize(
    ("line", "automatic"),
    [
        ("Auto-Submitted: no (set by the client)", False),
        ("Auto-Submitted: no (nested (comment))", False),
        ("Auto-Submitted: no (never closed", True),  # in doubt, automatic - as before comments nested
    ],
)
def test_given_auto_submitted_no_with_comments_when_screened_then_only_a_clean_no_is_not_automatic(
    line: str, automatic: bool
) -> None:
    assert (automatic_reason(headers("From: a@example.com", line)) is not None) == automatic
