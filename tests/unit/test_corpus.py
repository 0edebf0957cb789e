"""Robustness against the 103 real-world and deliberately broken e-mails of the external corpus.

Every message must end in exactly one defined outcome - rejected with a reason, or parsed - and
nothing but RejectedMessage may ever come out of the domain code. The corpus is found through
``LETTERSHOP_MAIL_CORPUS`` (tests/corpus.py); without it these tests are skipped with one line, and
tests/unit/test_mime_properties.py checks the same invariants on generated mail.
"""

from collections.abc import Callable
from pathlib import Path

import pytest

from domain.attachments import ParsedMessage, parse_message
from domain.errors import RejectedMessage
from domain.inbound import automatic_reason, is_recognized, parse_headers, rejection_reason
from tests import corpus
from tests.unit.outcomes import PATTERNS, outcome


@pytest.fixture
def load(mail_corpus: Path) -> Callable[[str], bytes]:
    """Reads one corpus message by its path relative to the corpus."""
    return lambda relative: (mail_corpus / relative).read_bytes()


def test_the_corpus_is_complete(mail_corpus: Path) -> None:
    assert len(corpus.messages(mail_corpus)) >= 103  # the README counts 105 files; 103 are messages


@pytest.mark.parametrize("relative", corpus.message_names())
def test_given_a_real_world_mail_when_screened_and_parsed_then_exactly_one_defined_outcome(
    relative: str, load: Callable[[str], bytes]
) -> None:
    raw = load(relative)

    # Header screening never raises and always answers with the documented types
    headers = parse_headers(raw)
    assert isinstance(headers.subject, str)
    assert "\n" not in headers.subject
    assert "\r" not in headers.subject
    assert isinstance(is_recognized(headers.subject, exclusive_account=False, keyword="LetterShop"), bool)
    assert automatic_reason(headers) is None or isinstance(automatic_reason(headers), str)
    for require in (False, True):
        sender, reason = rejection_reason(
            headers,
            allowed_senders=["example.com", "*.example.com"],
            require_authenticated_sender=require,
            trusted_authserv_ids=["mx.lettershop.example"],
        )
        assert sender is None or ("@" in sender and sender == sender.lower())
        assert reason is None or (isinstance(reason, str) and reason)
        if require:
            assert reason is not None  # nobody in the corpus is authenticated by our server

    # Full parsing: a ParsedMessage or RejectedMessage, nothing else
    parsed: ParsedMessage | None = None
    try:
        parsed = parse_message(raw, PATTERNS)
    except RejectedMessage as exc:
        rejection = str(exc)
    if parsed is None:
        assert rejection.startswith("message cannot be parsed")
    else:
        assert isinstance(parsed, ParsedMessage)
        seen: set[str] = set()
        for file in parsed.import_files:
            assert file.filename
            assert not any(ch in file.filename for ch in "/\\\x00\r\n")
            assert file.filename.casefold() not in seen
            seen.add(file.filename.casefold())
        assert all(isinstance(defect, str) and defect for defect in parsed.defects)

    # The message ends in exactly one outcome
    kind, detail = outcome(raw)
    assert (kind, type(detail)) in {("rejected", str), ("parsed", ParsedMessage)}


@pytest.mark.parametrize(
    "relative",
    [
        "multipart_report_emails/multi_address_bounce1.eml",
        "multipart_report_emails/multi_address_bounce2.eml",
        "multipart_report_emails/multipart_report_multiple_status.eml",
        "multipart_report_emails/report_422.eml",
        "multipart_report_emails/report_530.eml",
        "mime_emails/raw_email_with_mimepart_without_content_type.eml",
    ],
)
def test_given_a_bounce_when_screened_then_automatic_and_rejected(
    relative: str, load: Callable[[str], bytes]
) -> None:
    raw = load(relative)
    assert automatic_reason(parse_headers(raw)) == "bounce (multipart/report)"
    assert outcome(raw) == ("rejected", "bounce (multipart/report)")


@pytest.mark.parametrize(
    ("relative", "reason"),
    [
        ("error_emails/bad_date_header.eml", "Precedence: junk"),
        ("error_emails/empty_in_reply_to.eml", "mailing list (List-Id: abuser@rg.com Mailing List)"),
    ],
)
def test_given_bulk_mail_when_screened_then_automatic(
    relative: str, reason: str, load: Callable[[str], bytes]
) -> None:
    assert automatic_reason(parse_headers(load(relative))) == reason


@pytest.mark.parametrize(
    ("relative", "import_files", "others"),
    [
        ("attachment_emails/attachment_content_disposition.eml", [], ["api.rb"]),
        ("attachment_emails/attachment_message_rfc822.eml", [], ["broken.pdf"]),  # inside the forward
        ("attachment_emails/attachment_message_rfc822_inline_image.eml", [], ["img.png"]),
        ("attachment_emails/attachment_nonascii_filename.eml", ["ciële.txt"], []),
        ("attachment_emails/attachment_only_email.eml", [], ["blah.gz"]),
        ("attachment_emails/attachment_pdf.eml", [], ["broken.pdf"]),
        ("attachment_emails/attachment_pdf_non_ascii_lf.eml", [], ["broken.pdf"]),
        ("attachment_emails/attachment_with_base64_encoded_name.eml", [], ["This is a test.pdf"]),
        ("attachment_emails/attachment_with_quoted_filename.eml", [], ["Eelanalüüsi päring.jpg"]),
        ("attachment_emails/attachment_with_unquoted_name.eml", ["This is a test.txt"], []),
        ("error_emails/content_transfer_encoding_x_uuencode.eml", [], ["PGP_Cmts_on_12-14-01_Pkg.doc"]),
        ("mime_emails/raw_email7.eml", [], ["test.rb", "test.pdf", "smime.p7s"]),
        ("mime_emails/raw_email_with_nested_attachment.eml", [], ["truncated.png", "smime.p7s"]),
        (
            "mime_emails/raw_email_with_binary_encoded.eml",
            [],
            ["2013-08-13_19-08-28-1.jpg"],
        ),  # Outlook boundary
        ("mime_emails/sig_only_email.eml", [], ["signature.asc"]),
        ("multi_charset/japanese_attachment.eml", ["てすと.txt"], []),
        ("multi_charset/japanese_attachment_long_name.eml", ["かきくけこ" * 5 + ".txt"], []),
        ("plain_emails/basic_email.eml", [], []),
    ],
)
def test_given_mail_with_attachments_when_parsed_then_the_expected_names(
    relative: str, import_files: list[str], others: list[str], load: Callable[[str], bytes]
) -> None:
    parsed = parse_message(load(relative), PATTERNS)
    assert [file.filename for file in parsed.import_files] == import_files
    assert list(parsed.other_attachments) == others


def test_given_a_non_ascii_attachment_when_parsed_then_name_and_content_are_decoded(
    load: Callable[[str], bytes],
) -> None:
    parsed = parse_message(load("attachment_emails/attachment_nonascii_filename.eml"), PATTERNS)
    assert parsed.import_files[0].content == b"Hi there.\r\n"
    japanese = parse_message(load("multi_charset/japanese_attachment.eml"), PATTERNS)
    assert japanese.import_files[0].content.startswith(b"this is a test\n")


def test_given_an_rfc2231_name_in_a_charset_it_does_not_fit_when_parsed_then_readable_anyway(
    load: Callable[[str], bytes],
) -> None:
    # name*=iso-2022-jp'ja'01%20Quien%20Te%20Dij%8aat.%20Pitbull.mp3 - 0x8a is not ISO-2022-JP
    parsed = parse_message(load("attachment_emails/attachment_with_encoded_name.eml"), PATTERNS)
    (name,) = parsed.other_attachments
    assert name.startswith("01 Quien Te Dij")
    assert name.endswith("at. Pitbull.mp3")


@pytest.mark.parametrize(
    ("relative", "subject"),
    [
        ("multi_charset/japanese.eml", "まみむめも"),
        ("multi_charset/japanese_iso_2022.eml", "まみむめも"),
        ("rfc6532/utf8_headers.eml", "Säying Hello"),
        ("error_emails/bad_encoded_subject.eml", "TEST"),
        ("attachment_emails/attachment_pdf.eml", "Another PDF with 🎉 Unicode chars in it 🍿"),
        ("attachment_emails/attachment_with_quoted_filename.eml", "Eelanalüüsi päring"),
    ],
)
def test_given_encoded_subjects_when_read_then_decoded(
    relative: str, subject: str, load: Callable[[str], bytes]
) -> None:
    assert parse_headers(load(relative)).subject == subject


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("rfc6532/utf8_headers.eml", ("jdöe@xn--mchine-bua.example", None)),
        ("plain_emails/raw_email_multiple_from.eml", (None, "cannot be parsed")),
        ("plain_emails/raw_email_with_at_display_name.eml", (None, "holds 2 addresses")),
        ("plain_emails/mix_caps_content_type.eml", (None, "spaces")),
        ("plain_emails/raw_email_incorrect_header.eml", (None, "no From header")),
        ("rfc2822/example13.eml", (None, "no From header")),
        ("error_emails/cant_parse_from.eml", ("news@insideapple.apple.com", None)),
    ],
)
def test_given_odd_from_headers_when_screened_then_one_address_or_rejected(
    relative: str, expected: tuple[str | None, str | None], load: Callable[[str], bytes]
) -> None:
    headers = parse_headers(load(relative))
    allowed = [expected[0]] if expected[0] else []
    sender, reason = rejection_reason(
        headers, allowed_senders=allowed, require_authenticated_sender=False, trusted_authserv_ids=[]
    )
    assert sender == expected[0]
    if expected[1] is None:
        assert reason is None
    else:
        assert reason is not None
        assert expected[1] in reason


def test_given_a_message_without_any_valid_header_when_parsed_then_rejected_as_unparsable(
    load: Callable[[str], bytes],
) -> None:
    # rfc2822/example13.eml uses the obsolete "Name  :" syntax; Python's parser sees no header either
    with pytest.raises(RejectedMessage, match="message cannot be parsed"):
        parse_message(load("rfc2822/example13.eml"), PATTERNS)
