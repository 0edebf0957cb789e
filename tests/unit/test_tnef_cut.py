"""A winmail.dat (TNEF) cut short inside its last attribute, as real Outlook mail has it (issue 17
item 15): the attachments whole before the cut are read, the one whose data is cut is reported by
name, and the guards against counts that would make tnefparse loop stay."""

import struct
import time
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devstack.samples import VALID_IMPORT, partner_mail
from domain.attachments import parse_message
from domain.tnef import TnefError, TnefFile, read_tnef
from tests.unit.fakes import World, body_of
from tests.unit.outcomes import PATTERNS
from tests.unit.test_attachments import with_winmail
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
    # The data came whole, and the cut property list shows the file attached by value (its data is
    # the attAttachData, not in the properties): the file is whole, under its short name
    blob = tnef((b"ORDERS~1.CSV", CSV, "orders 2024.csv"), by_value=True)
    cut = blob[: len(blob) - len(MESSAGE_CLASS) - 8]
    assert read_tnef(cut) == (TnefFile(name="ORDERS~1.CSV", content=CSV),)


def test_given_an_attached_message_cut_inside_its_properties_when_read_then_cut_not_its_placeholder() -> None:
    # Outlook writes placeholder text as the attAttachData of an attached message; the message itself
    # is in the property list (PR_ATTACH_DATA_OBJ). Cut inside that list, the attachment is cut.
    placeholder = b"This attachment is a MAPI 1.0 embedded message and is not supported by this mail system."
    blob = tnef((b"Untitled Attachment", placeholder, "Forwarded message"))
    cut = blob[: len(blob) - len(MESSAGE_CLASS) - 8]  # no PR_ATTACH_METHOD shown before the cut
    assert read_tnef(cut) == (TnefFile(name="Untitled Attachment", content=b"", cut=True),)


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


@dataclass(frozen=True)
class _Attribute:
    start: int
    end: int
    level: int
    name: int


def _layout(
    files: list[tuple[str, bytes, str | None]], by_value: bool
) -> list[tuple[_Attribute, int | None]]:
    """Every attribute of the builder's blob (``tnef_samples.tnef``) and the file it belongs to."""
    sizes: list[tuple[int, int, int, int | None]] = [(1, 0x9006, 4, None), (1, 0x9007, 8, None)]
    for index, (title, data, long_name) in enumerate(files):
        sizes += [(2, 0x9002, 14, index), (2, 0x8010, len(title) + 1, index), (2, 0x800F, len(data), index)]
        if long_name is not None:
            sizes.append((2, 0x9005, len(mapi_long_filename(long_name, by_value=by_value)), index))
    sizes.append((1, 0x8008, 9, None))
    offset, layout = 6, list[tuple[_Attribute, int | None]]()
    for level, name, size, owner in sizes:
        layout.append((_Attribute(offset, offset + 11 + size, level, name), owner))
        offset += 11 + size
    return layout


def _expected(files: list[tuple[str, bytes, str | None]], by_value: bool, cut: int) -> tuple[TnefFile, ...]:
    """What ``read_tnef`` must make of the builder's blob cut at ``cut`` (a model of the rule in
    ``domain.tnef_layout.Layout.last_is_cut``): every attachment begun, with what of it is whole; the last
    one is ``cut`` when the blob ends before its data could be whole."""
    layout = _layout(files, by_value)
    whole = {(attribute.name, index) for attribute, index in layout if attribute.end <= cut}
    partial = next((attribute for attribute, _ in layout if attribute.start < cut < attribute.end), None)
    begun = [index for index in range(len(files)) if (0x9002, index) in whole]
    result = []
    for index in begun:
        title, data, long_name = files[index]
        properties = (0x9005, index) in whole
        name = long_name if properties and long_name else title if (0x8010, index) in whole else ""
        data_whole = (0x800F, index) in whole
        cut_short = False
        if index == begun[-1] and not properties:
            known = partial is not None and cut - partial.start >= 3  # the cut leaves the attribute's id
            if partial is None or partial.level != 2 or (known and partial.name == 0x9002):
                cut_short = not data_whole
            else:
                shown = known and partial.name == 0x9005 and by_value and cut - (partial.start + 9) >= 12
                cut_short = not (data_whole and shown)
        result.append(
            TnefFile(name=name, content=b"", cut=True)
            if cut_short
            else TnefFile(name, data if data_whole else b"")
        )
    return tuple(result)


@pytest.mark.property
@pytest.mark.timeout(120)
@given(files=_FILES, by_value=st.booleans(), data=st.data())
def test_given_any_cut_of_a_valid_winmail_dat_when_read_then_exactly_the_whole_attachments(
    files: list[tuple[str, bytes, str | None]], by_value: bool, data: st.DataObject
) -> None:
    encoded = [(title.encode("ascii"), content, long_name) for title, content, long_name in files]
    blob = tnef(*encoded, by_value=by_value)
    cut = data.draw(st.integers(0, len(blob)), label="cut")
    try:
        read = read_tnef(blob[:cut])
    except TnefError:
        assert cut < 4  # only a blob without its signature is refused
        return
    assert read == _expected(files, by_value, cut)
