"""Import-file extraction from full raw messages: names, nesting, TNEF, robustness (DESIGN §3)."""

import quopri
import struct
from email.message import EmailMessage

import pytest

from domain.attachments import ImportFile, ParsedMessage, parse_message
from domain.errors import RejectedMessage
from domain.filenames import clean_filename, safe_filename, unique_filename
from domain.inbound import parse_headers
from domain.tnef import TnefError, read_tnef
from tests.unit.tnef_samples import tnef, tnef_attribute

PATTERNS = ["*.csv", "*.txt"]
CSV = b"reference;name\r\nA1;Muster\r\n"


def message_with(*attachments: tuple[str, bytes, str]) -> bytes:
    message = EmailMessage()
    message["From"] = "orders@partner.ch"
    message["To"] = "import@lettershop.example"
    message["Subject"] = "LetterShop import"
    message["Message-ID"] = "<m1@partner.ch>"
    message.set_content("Please find the files attached.")
    for filename, content, mime in attachments:
        maintype, subtype = mime.split("/")
        message.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes()


def raw_message(*part_headers: str, body: bytes = b"reference;name\r\n") -> bytes:
    """multipart/mixed with a text part and one attachment whose headers are written by hand."""
    return (
        b"From: orders@partner.ch\r\nSubject: import\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
        b"--b1\r\n" + "\r\n".join(part_headers).encode("utf-8") + b"\r\n\r\n" + body + b"\r\n--b1--\r\n"
    )


def names(parsed: ParsedMessage) -> list[str]:
    return [file.filename for file in parsed.import_files]


# --- the ordinary case ----------------------------------------------------------------------


def test_given_a_csv_and_a_pdf_when_parsed_then_the_csv_is_an_import_file_and_the_pdf_is_listed() -> None:
    raw = message_with(("orders.csv", CSV, "text/csv"), ("terms.pdf", b"%PDF-1.4", "application/pdf"))
    parsed = parse_message(raw, PATTERNS)
    assert parsed.import_files == (ImportFile("orders.csv", CSV),)
    assert parsed.other_attachments == ("terms.pdf",)
    assert parsed.headers == parse_headers(raw)
    assert parsed.headers.subject == "LetterShop import"


def test_given_upper_case_names_and_patterns_when_matched_then_case_insensitive() -> None:
    raw = message_with(("ORDERS.CSV", CSV, "text/csv"), ("notes.TxT", b"x", "text/plain"))
    assert names(parse_message(raw, ["*.Csv", "*.TXT"])) == ["ORDERS.CSV", "notes.TxT"]


def test_given_no_patterns_when_parsed_then_nothing_is_an_import_file() -> None:
    parsed = parse_message(message_with(("orders.csv", CSV, "text/csv")), [])
    assert parsed.import_files == ()
    assert parsed.other_attachments == ("orders.csv",)


def test_given_a_csv_attachment_without_a_name_when_parsed_then_not_an_import_file() -> None:
    raw = raw_message("Content-Type: text/csv", "Content-Disposition: attachment")
    parsed = parse_message(raw, PATTERNS)
    assert parsed.import_files == ()
    assert parsed.other_attachments == ("(unnamed text/csv attachment)",)


def test_given_an_inline_csv_body_without_a_name_when_parsed_then_ignored() -> None:
    parsed = parse_message(raw_message("Content-Type: text/csv"), PATTERNS)
    assert parsed.import_files == ()
    assert parsed.other_attachments == ()


def test_given_an_inline_part_with_a_name_when_parsed_then_it_counts() -> None:
    raw = raw_message("Content-Type: text/csv", 'Content-Disposition: inline; filename="orders.csv"')
    assert names(parse_message(raw, PATTERNS)) == ["orders.csv"]


def test_given_a_single_part_message_that_is_the_file_when_parsed_then_found() -> None:
    raw = (
        b"From: orders@partner.ch\r\nContent-Type: text/csv; name=orders.csv\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\ncmVmZXJlbmNlO25hbWUNCg==\r\n"
    )
    assert parse_message(raw, PATTERNS).import_files == (ImportFile("orders.csv", b"reference;name\r\n"),)


# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("part_headers", "expected"),
    [
        (
            ["Content-Type: text/csv", "Content-Disposition: attachment; filename*=UTF-8''B%C3%BCcher.csv"],
            "Bücher.csv",
        ),
        (
            [
                "Content-Type: text/csv",
                "Content-Disposition: attachment; filename*=iso-8859-1'de'B%FCcher%20neu.csv",
            ],
            "Bücher neu.csv",
        ),
        (
            [
                "Content-Type: text/csv",
                "Content-Disposition: attachment;\r\n filename*0*=UTF-8''B%C3%BC;\r\n filename*1*=cher%20;"
                '\r\n filename*2="2024.csv"',
            ],
            "Bücher 2024.csv",
        ),
        (
            [
                "Content-Type: text/csv",
                'Content-Disposition: attachment; filename*0="long "; filename*1="name.csv"',
            ],
            "long name.csv",
        ),
        (['Content-Type: text/csv; name="=?UTF-8?B?QsO8Y2hlci5jc3Y=?="'], "Bücher.csv"),
        (["Content-Type: text/csv; name==?utf-8?Q?B=C3=BCcher.csv?="], "Bücher.csv"),
        (
            [
                'Content-Type: text/csv; name="=?utf-8?B?44GL44GN?=\r\n =?utf-8?B?44GP?=.csv"',
                "Content-Disposition: attachment",
            ],
            "かきく.csv",
        ),
        (["Content-Type: text/csv; name=ciële.csv"], "ciële.csv"),  # raw UTF-8 (RFC 6532)
        (["Content-Type: text/csv; name=This is a test.csv"], "This is a test.csv"),
        (
            [
                'Content-Type: text/csv; name="wrong.csv"',
                'Content-Disposition: attachment; filename="right.csv"',
            ],
            "right.csv",
        ),
        (
            [
                "Content-Type: text/csv",
                'Content-Disposition: attachment; filename="a \\"quoted\\" ;name.csv"',
            ],
            "a _quoted_ ;name.csv",
        ),
        (
            ["Content-Type: text/csv", "Content-Disposition: attachment; filename=../../etc/passwd.csv"],
            "passwd.csv",
        ),
        (
            [
                "Content-Type: text/csv",
                'Content-Disposition: attachment; filename="C:\\\\Users\\\\x\\\\orders.csv"',
            ],
            "orders.csv",
        ),
        (
            ["Content-Type: text/csv", 'Content-Disposition: attachment; filename="..\\\\..\\\\evil.csv"'],
            "evil.csv",
        ),
        (
            [
                "Content-Type: text/csv",
                "Content-Disposition: attachment; filename*=UTF-8''..%2F..%2Fetc%2Fpasswd.csv",
            ],
            "passwd.csv",
        ),
        (
            ["Content-Type: text/csv", "Content-Disposition: attachment; filename*=UTF-8''a%00b%0D%0Ac.csv"],
            "a b c.csv",
        ),
        (
            [
                "Content-Type: text/csv",
                "Content-Disposition: attachment; filename*=UTF-8''invoice%E2%80%AEvsc.csv",
            ],
            "invoicevsc.csv",
        ),
        (
            ["Content-Type: text/csv", 'Content-Disposition: attachment; filename=".hidden.csv  "'],
            "hidden.csv",
        ),
        (
            ["Content-Type: text/csv", 'Content-Disposition: attachment; filename="a<b>|c?.csv"'],
            "a_b__c_.csv",
        ),
        (
            ["Content-Type: text/csv", "Content-Disposition: attachment; filename*=UTF-8''Bu%CC%88cher.csv"],
            "Bücher.csv",
        ),
    ],
)
def test_given_an_encoded_or_hostile_name_when_parsed_then_decoded_and_safe(
    part_headers: list[str], expected: str
) -> None:
    parsed = parse_message(raw_message(*part_headers), PATTERNS)
    assert names(parsed) == [expected]


def test_given_a_very_long_name_when_made_safe_then_at_most_200_bytes_and_the_extension_kept() -> None:
    name = safe_filename("ü" * 300 + ".csv", index=1)
    assert name.endswith("ü.csv")
    assert len(name.encode("utf-8")) <= 200


@pytest.mark.parametrize(
    ("name", "content_type", "expected"),
    [
        ("", "text/plain", "attachment-3.txt"),
        (None, "", "attachment-3.bin"),
        ("  . ", "application/pdf", "attachment-3.pdf"),
    ],
)
def test_given_nothing_usable_when_made_safe_then_a_generated_name(
    name: str | None, content_type: str, expected: str
) -> None:
    assert safe_filename(name, index=3, content_type=content_type) == expected


def test_given_the_same_name_twice_when_parsed_then_both_kept_and_the_second_renamed() -> None:
    raw = message_with(
        ("orders.csv", b"one", "text/csv"),
        ("ORDERS.csv", b"two", "text/csv"),
        ("orders (2).csv", b"three", "text/csv"),
        ("orders.csv", b"four", "text/csv"),
    )
    parsed = parse_message(raw, PATTERNS)
    assert parsed.import_files == (
        ImportFile("orders.csv", b"one"),
        ImportFile("ORDERS (2).csv", b"two"),
        ImportFile("orders (2) (2).csv", b"three"),
        ImportFile("orders (3).csv", b"four"),
    )


def test_given_taken_names_when_made_unique_then_numbered() -> None:
    taken: set[str] = set()
    assert [unique_filename(name, taken) for name in ["a.csv", "A.CSV", "a.csv", "noext", "noext"]] == [
        "a.csv",
        "A (2).CSV",
        "a (3).csv",
        "noext",
        "noext (2)",
    ]


def test_given_a_name_with_a_blank_before_its_extension_when_made_unique_then_still_a_safe_name() -> None:
    # found by tests/unit/test_mime_properties.py: "0 .csv" became "0  (2).csv", two blanks
    taken: set[str] = set()
    names = [unique_filename(name, taken) for name in ["0 .csv", "0 .csv"]]
    assert names == ["0 .csv", "0 (2).csv"]
    assert all(safe_filename(name, index=1) == name for name in names)


def test_given_a_long_name_taken_when_made_unique_then_the_number_fits_the_limit() -> None:
    name = safe_filename("x" * 300 + ".csv", index=1)
    second = unique_filename(name, {name.casefold()})
    assert second.endswith(" (2).csv")
    assert len(second.encode()) <= 200
    assert safe_filename(second, index=1) == second


# --- containers: forwarded messages ---------------------------------------------------------


def forwarded(
    inner: bytes, *, base64: bool = False, quoted_printable: bool = False, boundary: str = "x"
) -> bytes:
    outer = EmailMessage()
    outer["From"] = "orders@partner.ch"
    outer["Subject"] = "Fwd: import"
    outer.set_content("see below")
    if base64 or quoted_printable:
        import base64 as b64

        encoded = quopri.encodestring(inner) if quoted_printable else b64.encodebytes(inner)
        encoding = b"quoted-printable" if quoted_printable else b"base64"
        b = boundary.encode()  # QP leaves the inner boundaries readable: nested forwards need their own
        part = (
            b"--"
            + b
            + b"\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: "
            + encoding
            + b"\r\n"
            b'Content-Disposition: attachment; filename="fwd.eml"\r\n\r\n'
            + encoded
            + b"\r\n--"
            + b
            + b"--\r\n"
        )
        return (
            b"From: orders@partner.ch\r\nSubject: Fwd\r\n"
            b'Content-Type: multipart/mixed; boundary="' + b + b'"\r\n\r\n'
            b"--" + b + b"\r\nContent-Type: text/plain\r\n\r\nsee below\r\n" + part
        )
    outer.add_attachment(inner, maintype="message", subtype="rfc822", filename="forwarded.eml")
    return outer.as_bytes()


def test_given_a_forwarded_message_with_a_csv_when_parsed_then_the_csv_is_found() -> None:
    inner = message_with(("orders.csv", CSV, "text/csv"))
    parsed = parse_message(forwarded(inner), PATTERNS)
    assert parsed.import_files == (ImportFile("orders.csv", CSV),)
    assert parsed.other_attachments == ()  # the .eml container itself is not listed


def test_given_a_forward_of_a_forward_when_parsed_then_the_csv_is_found() -> None:
    inner = forwarded(message_with(("deep.csv", CSV, "text/csv")))
    assert names(parse_message(forwarded(inner), PATTERNS)) == ["deep.csv"]


def test_given_a_base64_encoded_forwarded_message_when_parsed_then_the_csv_is_found() -> None:
    inner = message_with(("orders.csv", CSV, "text/csv"))
    assert names(parse_message(forwarded(inner, base64=True), PATTERNS)) == ["orders.csv"]


# --- containers: winmail.dat (TNEF) ---------------------------------------------------------


def with_winmail(blob: bytes, filename: str = "winmail.dat", mime: str = "application/ms-tnef") -> bytes:
    return message_with((filename, blob, mime))


def test_given_our_tnef_encoder_when_read_by_tnefparse_then_it_round_trips() -> None:
    files = read_tnef(tnef((b"ORDERS~1.CSV", CSV, "orders 2024.csv"), (b"a.pdf", b"%PDF", None)))
    assert [(file.name, file.content) for file in files] == [("orders 2024.csv", CSV), ("a.pdf", b"%PDF")]


def test_given_a_winmail_dat_with_a_csv_when_parsed_then_the_csv_is_found_by_its_long_name() -> None:
    blob = tnef((b"ORDERS~1.CSV", CSV, "Aufträge 2024.csv"), (b"logo.png", b"\x89PNG....", None))
    parsed = parse_message(with_winmail(blob), PATTERNS)
    assert parsed.import_files == (ImportFile("Aufträge 2024.csv", CSV),)
    assert parsed.other_attachments == ("logo.png",)


def test_given_a_winmail_dat_sent_as_octet_stream_when_parsed_then_recognised_by_its_name() -> None:
    blob = tnef((b"orders.csv", CSV, None))
    parsed = parse_message(with_winmail(blob, "WINMAIL.DAT", "application/octet-stream"), PATTERNS)
    assert names(parsed) == ["orders.csv"]


def test_given_a_windows_1252_title_when_parsed_then_decoded() -> None:
    blob = tnef(("Bücher.csv".encode("cp1252"), CSV, None))
    assert names(parse_message(with_winmail(blob), PATTERNS)) == ["Bücher.csv"]


def test_given_a_hostile_name_in_tnef_when_parsed_then_made_safe() -> None:
    blob = tnef((b"..\\..\\boot.csv", CSV, None))
    assert names(parse_message(with_winmail(blob), PATTERNS)) == ["boot.csv"]


def test_given_a_truncated_winmail_dat_when_parsed_then_the_file_it_cuts_is_named_with_a_defect() -> None:
    blob = tnef((b"orders.csv", CSV, "orders.csv"))[
        :-80
    ]  # cut inside the file's data (tests/unit/test_tnef_cut.py)
    parsed = parse_message(with_winmail(blob), PATTERNS)
    assert [(file.filename, file.content) for file in parsed.import_files] == [("orders.csv", b"")]
    assert parsed.import_files[0].problem is not None
    assert parsed.other_attachments == ()
    assert "part 2: winmail.dat ends before the data of its attachment 'orders.csv'" in parsed.defects


def test_given_a_tnef_count_beyond_its_data_when_read_then_refused_before_tnefparse_loops() -> None:
    # a MAPI property list claiming 4 billion properties: tnefparse would spin through all of them
    hostile = struct.pack("<IH", 0x223E9F78, 1)
    hostile += tnef_attribute(1, 0x00069007, struct.pack("<II", 1252, 0))
    hostile += tnef_attribute(2, 0x00069002, b"\x00" * 14)
    hostile += tnef_attribute(2, 0x00069005, struct.pack("<I", 0xFFFFFFFF) + b"\x00" * 16)
    hostile += tnef_attribute(1, 0x00078008, b"IPM.Note\x00")
    with pytest.raises(TnefError, match="inconsistent"):
        read_tnef(hostile)


def test_given_a_multi_value_count_beyond_its_data_when_read_then_refused() -> None:
    mapi = struct.pack("<IHHI", 1, 0x1003, 0x0E20, 0xFFFFFFF0)  # PT_MV_LONG with a huge count
    hostile = struct.pack("<IH", 0x223E9F78, 1) + tnef_attribute(2, 0x00069002, b"\x00" * 14)
    hostile += tnef_attribute(2, 0x00069005, mapi + b"\x00" * 8) + tnef_attribute(1, 0x00078008, b"IPM\x00")
    with pytest.raises(TnefError):
        read_tnef(hostile)


def test_given_a_declared_tnef_part_without_signature_when_parsed_then_an_ordinary_attachment() -> None:
    parsed = parse_message(with_winmail(b"not tnef at all"), PATTERNS)
    assert parsed.other_attachments == ("winmail.dat",)
    assert any("no TNEF signature" in defect for defect in parsed.defects)


# --- robustness -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", [b"", b"\r\n\r\nonly a body", b"\x00\x01\x02\xff\xfe binary garbage", b"not a header line\r\n"]
)
def test_given_no_header_at_all_when_parsed_then_rejected(raw: bytes) -> None:
    with pytest.raises(RejectedMessage, match="message cannot be parsed"):
        parse_message(raw, PATTERNS)


def test_given_a_header_that_crashes_policy_default_when_parsed_then_compat32_takes_over() -> None:
    # Python 3.13's modern parser raises IndexError on this Content-Type
    raw = b"From: orders@partner.ch\r\nContent-Type: multipart/mixed; boundary*\r\n\r\nbody\r\n"
    parsed = parse_message(raw, PATTERNS)
    assert parsed.import_files == ()
    assert any("compat32" in defect for defect in parsed.defects)


def test_given_an_outlook_boundary_with_equals_signs_when_parsed_then_the_parts_are_found() -> None:
    raw = (
        b"From: orders@partner.ch\r\n"
        b"Content-Type: multipart/mixed;\r\n\tboundary=----=_NextPart_000_0093_01C8\r\n\r\n"
        b"------=_NextPart_000_0093_01C8\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
        b"------=_NextPart_000_0093_01C8\r\nContent-Type: text/csv; name=orders.csv\r\n\r\na;b\r\n"
        b"------=_NextPart_000_0093_01C8--\r\n"
    )
    assert parse_message(raw, PATTERNS).import_files == (ImportFile("orders.csv", b"a;b"),)


def test_given_broken_base64_when_parsed_then_decoded_as_far_as_possible() -> None:
    raw = raw_message(
        "Content-Type: text/csv; name=orders.csv",
        "Content-Transfer-Encoding: base64",
        body=b"YTti!!\r\nCjE7Mg=\r\n",
    )
    assert parse_message(raw, PATTERNS).import_files == (ImportFile("orders.csv", b"a;b\n1;2"),)


def test_given_a_missing_boundary_when_parsed_then_defects_in_words() -> None:
    raw = (
        b'From: orders@partner.ch\r\nContent-Type: multipart/mixed; boundary="gone"\r\n\r\nno parts here\r\n'
    )
    parsed = parse_message(raw, PATTERNS)
    assert parsed.import_files == ()
    assert "message: start boundary not found" in parsed.defects


def deep_message(depth: int) -> bytes:
    raw = b"From: a@partner.ch\r\n"
    for level in range(depth):
        raw += f'Content-Type: multipart/mixed; boundary="b{level}"\r\n\r\n--b{level}\r\n'.encode()
    return raw + b"Content-Type: text/csv; name=deep.csv\r\n\r\na;b\r\n"


def test_given_30_levels_of_nesting_when_parsed_then_the_csv_at_the_bottom_is_found() -> None:
    assert names(parse_message(deep_message(30), PATTERNS)) == ["deep.csv"]


@pytest.mark.parametrize("depth", [31, 400, 3000])  # 3000: beyond what Python's parser can recurse into
def test_given_nesting_beyond_30_levels_when_parsed_then_rejected_naming_the_bound(depth: int) -> None:
    # (before issue 10 the search stopped at 30 levels with a defect, or the parser's RecursionError
    # rejected the message after it had read everything; now the 31st level is never read)
    bound = r"nested more than 30 levels deep \(bound max_mime_depth = 30\)"
    with pytest.raises(RejectedMessage, match=bound):
        parse_message(deep_message(depth), PATTERNS)


def test_given_an_outlook_message_attached_inside_winmail_dat_when_parsed_then_its_csv_is_found() -> None:
    # Given an attachment whose PR_ATTACH_DATA_OBJ (0x3701, PT_OBJECT) is an embedded TNEF message
    value = b"\x07\x03\x02\x00\x00\x00\x00\x00\xc0\x00\x00\x00\x00\x00\x00\x46" + tnef(
        (b"inner.csv", CSV, None)
    )
    mapi = struct.pack("<IHHII", 1, 0x000D, 0x3701, 1, len(value)) + value + b"\x00" * (-len(value) % 4)
    outer = struct.pack("<IH", 0x223E9F78, 1)
    outer += tnef_attribute(1, 0x00069007, struct.pack("<II", 1252, 0))
    outer += tnef_attribute(2, 0x00069002, b"\x01\x00" + b"\xff" * 4 + b"\x00" * 8)
    outer += tnef_attribute(2, 0x00018010, b"Forwarded message\x00")
    outer += tnef_attribute(2, 0x00069005, mapi)
    outer += tnef_attribute(1, 0x00078008, b"IPM.Note\x00")
    # When parsed
    parsed = parse_message(with_winmail(outer), PATTERNS)
    # Then the file inside the inner message is an import file, the container is not listed
    assert parsed.import_files == (ImportFile("inner.csv", CSV),)
    assert parsed.other_attachments == ()


# --- issue 10: names of which nothing is left; quoted-printable forwarded messages ------------


@pytest.mark.parametrize(
    "disposition",
    [
        'attachment; filename="../"',
        'attachment; filename=".."',
        'attachment; filename=" . . "',
        "attachment; filename*=UTF-8''%2F%5C%2E%2F",  # separators and a dot
        "attachment; filename*=UTF-8''%01%02%1B%7F",  # control characters
        "attachment; filename*=UTF-8''%E2%80%AE%E2%80%8F%E2%80%8B",  # bidi override, RLM, zero-width space
        "attachment; filename*=UTF-8''%E2%80%AE..%0D%0A",  # all of them
    ],
)
@pytest.mark.parametrize("patterns", [PATTERNS, ["attachment-*"], ["*"]])
def test_given_a_name_of_which_nothing_is_left_when_parsed_then_never_an_import_file(
    disposition: str, patterns: list[str]
) -> None:
    # Given a CSV whose name cleans to nothing (safe_filename would call it "attachment-1.csv")
    raw = raw_message("Content-Type: text/csv", f"Content-Disposition: {disposition}")
    # When parsed with patterns the generated name would match
    parsed = parse_message(raw, patterns)
    # Then it is no import file, and it is listed (the "no import file" reply names what was found)
    assert parsed.import_files == ()
    assert parsed.other_attachments == ("(unnamed text/csv attachment)",)


def test_given_a_real_file_named_like_a_generated_name_when_parsed_then_still_an_import_file() -> None:
    raw = message_with(("attachment-1.csv", CSV, "text/csv"), ("attachment-2.txt", b"x", "text/plain"))
    parsed = parse_message(raw, PATTERNS)
    assert parsed.import_files == (ImportFile("attachment-1.csv", CSV), ImportFile("attachment-2.txt", b"x"))
    assert parsed.other_attachments == ()


def test_given_a_nameless_and_a_real_csv_when_parsed_then_only_the_real_one_is_an_import_file() -> None:
    raw = (
        b'From: orders@partner.ch\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b'--b\r\nContent-Type: text/csv\r\nContent-Disposition: attachment; filename="./"\r\n\r\nx;y\r\n'
        b'--b\r\nContent-Type: text/csv\r\nContent-Disposition: attachment; filename="orders.csv"\r\n\r\n'
        b"a;b\r\n--b--\r\n"
    )
    parsed = parse_message(raw, PATTERNS)
    assert parsed.import_files == (ImportFile("orders.csv", b"a;b"),)
    assert parsed.other_attachments == ("(unnamed text/csv attachment)",)


def test_given_a_tnef_file_without_a_name_when_parsed_then_never_an_import_file() -> None:
    parsed = parse_message(with_winmail(tnef((b"", CSV, None), (b"orders.csv", CSV, None))), ["*"])
    assert parsed.import_files == (ImportFile("orders.csv", CSV),)
    assert parsed.other_attachments == ("(unnamed attachment)",)


@pytest.mark.parametrize(
    ("name", "cleaned"),
    [
        ("../", ""),
        ("\u202e\u200f", ""),
        (" .\x00. ", ""),
        (None, ""),
        ("orders.csv", "orders.csv"),
        ("attachment-1.csv", "attachment-1.csv"),
        ("../x/.orders.csv ", "orders.csv"),
    ],
)
def test_given_a_name_when_cleaned_then_empty_only_when_nothing_is_left(
    name: str | None, cleaned: str
) -> None:
    assert clean_filename(name) == cleaned
    assert safe_filename(name, index=7, content_type="text/csv") == (cleaned or "attachment-7.csv")


def test_given_a_quoted_printable_forwarded_message_when_parsed_then_the_csv_is_found() -> None:
    # Given a forward whose boundary ("===...==") and UTF-8 content QP turns into =3D and =C3=BC
    content = "reference;name\r\nA1;Müller\r\n".encode()
    inner = message_with(("orders.csv", content, "text/csv"), ("terms.pdf", b"%PDF", "application/pdf"))
    raw = forwarded(inner, quoted_printable=True)
    assert b"=3D" in raw
    # When parsed, then the forward is decoded and searched like a base64-encoded one
    parsed = parse_message(raw, PATTERNS)
    assert parsed.import_files == (ImportFile("orders.csv", content),)
    assert parsed.other_attachments == ("terms.pdf",)  # the fwd.eml container itself is not listed


def test_given_a_quoted_printable_forward_with_soft_breaks_in_its_headers_when_parsed_then_found() -> None:
    # Given a CRLF forward whose long Content-Disposition line QP cuts with a soft line break
    name = "Bestellungen-" + "x" * 80 + "-Bücher.csv"
    inner = (
        b"From: orders@partner.ch\r\nSubject: orders\r\n"
        b'Content-Type: multipart/mixed; boundary="==inner=="\r\n\r\n'
        b"--==inner==\r\nContent-Type: text/csv\r\n"
        b"Content-Disposition: attachment; filename*=utf-8''" + name.replace("ü", "%C3%BC").encode() + b"\r\n"
        b"\r\n" + CSV + b"\r\n--==inner==--\r\n"
    )
    encoded = quopri.encodestring(inner)
    assert b"=\r\n" in encoded or b"=\n" in encoded
    raw = (
        b'From: orders@partner.ch\r\nSubject: Fwd\r\nContent-Type: multipart/mixed; boundary="x"\r\n\r\n'
        b"--x\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: Quoted-Printable \r\n\r\n"
        + encoded
        + b"\r\n--x--\r\n"
    )
    # When parsed, then the file is found with its whole name and exact content
    assert parse_message(raw, PATTERNS).import_files == (ImportFile(name, CSV),)


def test_given_a_top_level_quoted_printable_message_rfc822_when_parsed_then_the_csv_is_found() -> None:
    inner = message_with(("orders.csv", CSV, "text/csv"))
    raw = (
        b"From: orders@partner.ch\r\nSubject: LetterShop\r\nContent-Type: message/rfc822\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + quopri.encodestring(inner)
    )
    assert names(parse_message(raw, PATTERNS)) == ["orders.csv"]


@pytest.mark.parametrize("encoding", ["quoted_printable", "base64"])
@pytest.mark.parametrize(("levels", "found"), [(5, ["deep.csv"]), (6, [])])
def test_given_encoded_forwards_nested_deeply_when_parsed_then_the_same_nesting_limit_applies(
    encoding: str, levels: int, found: list[str]
) -> None:
    raw = message_with(("deep.csv", CSV, "text/csv"))
    for level in range(levels):
        raw = forwarded(raw, **{encoding: True}, boundary=f"x{level}")
    parsed = parse_message(raw, PATTERNS)
    assert names(parsed) == found
    assert any("nested too deep" in defect for defect in parsed.defects) == (not found)


@pytest.mark.parametrize("content_type", [b"image/\x00", b"image/\x1b$B", b"text/csv\x7f"])
@pytest.mark.parametrize("disposition", [b"attachment", b"attachment; filename=.."])
def test_given_an_unnamed_attachment_with_a_broken_content_type_when_listed_then_no_control_characters(
    content_type: bytes, disposition: bytes
) -> None:
    # found by tests/unit/test_mime_properties.py: "(unnamed image/\x00 attachment)"
    raw = b"From: a@partner.ch\nContent-Disposition: " + disposition + b"\nContent-Type: " + content_type
    parsed = parse_message(raw + b"\n\nbody", PATTERNS)
    assert parsed.other_attachments == ("(unnamed attachment)",)
