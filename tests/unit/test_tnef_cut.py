"""A winmail.dat (TNEF) cut short inside its last attribute, as real Outlook mail has it (issue 17
item 15): the attachments whole before the cut are read, the one whose data is cut is reported by
name, and the guards against counts that would make tnefparse loop stay."""

import struct
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devstack.samples import VALID_IMPORT, partner_mail
from domain.attachments import parse_message
from domain.tnef import TnefError, TnefFile, read_tnef
from tests.unit.outcomes import PATTERNS
from tests.unit.test_attachments import with_winmail
from tests.unit.test_poll_service import World, body_of
from tests.unit.tnef_samples import mapi_long_filename, tnef, tnef_attribute

CSV = b"reference;name;street;postcode;city;weight_g\r\nR1;Muster;Weg 1;8000;Zurich;80\r\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
MESSAGE_CLASS = tnef_attribute(1, 0x00078008, b"IPM.Note\x00")  # the builder's trailing attribute


def test_given_a_winmail_dat_cut_inside_its_last_attribute_when_parsed_then_its_import_file_is_found() -> (
    None
):
    # Given a picture and an import file, whole, and the blob's last attribute cut short
    blob = tnef((b"logo.png", PNG, None), (b"ORDERS~1.CSV", CSV, "Aufträge 2024.csv"))
    cut = blob[: len(blob) - len(MESSAGE_CLASS) + 5]
    # When the message around it is parsed
    parsed = parse_message(with_winmail(cut), PATTERNS)
    # Then the import file is there, whole, under its long name, and the picture is listed
    assert [(file.filename, file.content, file.problem) for file in parsed.import_files] == [
        ("Aufträge 2024.csv", CSV, None)
    ]
    assert parsed.other_attachments == ("logo.png",)


def test_given_a_winmail_dat_cut_inside_an_import_files_data_when_parsed_then_that_file_is_named() -> None:
    # Given a whole picture, then an import file whose data the blob ends inside of
    blob = tnef((b"logo.png", PNG, None), (b"orders.csv", CSV, None))
    cut = blob[: blob.index(CSV) + 20]
    # When parsed
    parsed = parse_message(with_winmail(cut), PATTERNS)
    # Then the picture is read and the import file is an import file that cannot be processed, named
    assert parsed.other_attachments == ("logo.png",)
    [broken] = parsed.import_files
    assert (broken.filename, broken.content) == ("orders.csv", b"")
    assert broken.problem is not None
    assert broken.problem.startswith("orders.csv: the file arrived cut short: the Outlook winmail.dat")
    assert "part 2: winmail.dat ends before the data of its attachment 'orders.csv'" in parsed.defects


def test_given_a_winmail_dat_cut_inside_a_pictures_data_when_parsed_then_the_picture_is_listed_cut() -> None:
    blob = tnef((b"orders.csv", CSV, None), (b"logo.png", PNG, None))
    parsed = parse_message(with_winmail(blob[: blob.index(PNG) + 3]), PATTERNS)
    assert [(file.filename, file.content) for file in parsed.import_files] == [("orders.csv", CSV)]
    assert parsed.other_attachments == ("logo.png (cut short)",)


def test_given_a_winmail_dat_cut_inside_a_long_name_when_read_then_read_under_its_short_name() -> None:
    # The data came whole before the property list carrying the long name: the file is whole
    blob = tnef((b"ORDERS~1.CSV", CSV, "orders 2024.csv"))
    cut = blob[: len(blob) - len(MESSAGE_CLASS) - 8]
    assert read_tnef(cut) == (TnefFile(name="ORDERS~1.CSV", content=CSV),)


def test_given_a_cut_attribute_claiming_4_gb_when_read_then_read_at_once_without_allocating() -> None:
    blob = tnef((b"orders.csv", CSV, None)) + struct.pack("<BII", 1, 0x00078008, 0xFFFFFFFF) + b"IPM.Note\x00"
    started = time.perf_counter()
    assert read_tnef(blob) == (TnefFile(name="orders.csv", content=CSV),)
    assert time.perf_counter() - started < 1.0


def test_given_a_whole_attribute_whose_count_runs_beyond_it_when_read_then_still_refused() -> None:
    # The guard stays: a property list claiming 4 billion properties inside a whole attribute
    hostile = tnef((b"orders.csv", CSV, None))[: -len(MESSAGE_CLASS)]
    hostile += tnef_attribute(2, 0x00069005, struct.pack("<I", 0xFFFFFFFF) + b"\x00" * 16) + MESSAGE_CLASS
    with pytest.raises(TnefError, match="inconsistent"):
        read_tnef(hostile)


# --- through the poll: the partner is answered --------------------------------------------------------


def test_given_a_cut_winmail_dat_with_a_whole_import_file_when_polled_then_it_is_processed() -> None:
    world = World()
    blob = tnef((b"logo.png", PNG, None), (b"ORDERS~1.CSV", VALID_IMPORT, "orders.csv"))
    world.mailbox.deliver("u1", partner_mail(attachments=[("winmail.dat", blob[:-7])]))

    result = world.poll()

    assert (result["processed"], result["failed"]) == (1, 0)
    [reply] = world.replies.sent
    assert [part.get_filename() for part in reply.message.iter_attachments()] == ["orders_export.csv"]


def test_given_an_import_file_cut_inside_a_winmail_dat_when_polled_then_the_reply_names_it() -> None:
    world = World()
    blob = tnef((b"late.csv", VALID_IMPORT, None))
    cut = blob[: blob.index(VALID_IMPORT) + 30]
    world.mailbox.deliver(
        "u1", partner_mail(attachments=[("winmail.dat", cut), ("orders.csv", VALID_IMPORT)])
    )

    result = world.poll()

    assert result["processed"] == 1
    [reply] = world.replies.sent
    assert "late.csv: not processed: late.csv: the file arrived cut short" in body_of(reply.message)
    assert [part.get_filename() for part in reply.message.iter_attachments()] == ["orders_export.csv"]
    assert world.serials.calls == [2]  # only orders.csv's rows: nothing is spent on the cut file


# --- any cut of a valid blob -------------------------------------------------------------------------

_TITLES = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-~", max_size=12)
_LONG_NAMES = st.none() | st.text(
    st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=20
)
_FILES = st.lists(st.tuples(_TITLES, st.binary(max_size=50), _LONG_NAMES), max_size=3)


def _expected(files: list[tuple[str, bytes, str | None]], cut: int) -> tuple[TnefFile, ...]:
    """What a blob of the builder (``tnef_samples.tnef``) cut at ``cut`` holds whole: every file whose
    data attribute ends before the cut (under its long name when that attribute is whole too), then
    the file the cut falls into, if it began, as cut."""
    offset = 6 + (11 + 4) + (11 + 8)  # signature, key, attTnefVersion, attOemCodepage
    result: list[TnefFile] = []
    for title, data, long_name in files:
        rendered = offset + 11 + 14
        titled = rendered + 11 + len(title) + 1
        offset = titled + 11 + len(data)
        if offset > cut:
            if rendered <= cut:
                result.append(TnefFile(name=title if titled <= cut else "", content=b"", cut=True))
            break
        if long_name is not None:
            offset += 11 + len(mapi_long_filename(long_name))
        result.append(
            TnefFile(name=long_name if long_name is not None and offset <= cut else title, content=data)
        )
    return tuple(result)


@pytest.mark.property
@pytest.mark.timeout(120)
@given(files=_FILES, data=st.data())
def test_given_any_cut_of_a_valid_winmail_dat_when_read_then_exactly_the_whole_attachments(
    files: list[tuple[str, bytes, str | None]], data: st.DataObject
) -> None:
    blob = tnef(*[(title.encode("ascii"), content, long_name) for title, content, long_name in files])
    cut = data.draw(st.integers(0, len(blob)), label="cut")
    try:
        read = read_tnef(blob[:cut])
    except TnefError:
        assert cut < 4  # only a blob without its signature is refused
        return
    assert read == _expected(files, cut)
