"""Real-world winmail.dat (TNEF) files: an *optional external* suite, never part of this repository.

Set ``LETTERSHOP_TNEF_CORPUS`` to a folder of ``*.tnef`` files to run it, for example the examples of
tnefparse's own tests (``tests/examples`` of github.com/koodaamo/tnefparse, LGPL-3.0; kept outside
this repository, as the mail corpus is). Without the variable the module is skipped with one line; a
variable naming a folder that is not there fails it. Files of tnefparse's examples are checked against
the attachments tnefparse's tests expect; every file, and cuts of it, against the rules of
``domain.tnef`` (issue 17 item 15).
"""

import os
from pathlib import Path

import pytest

from domain.attachments import parse_message
from domain.bounds import BoundExceeded
from domain.tnef import TnefError, read_tnef
from tests.unit.test_attachments import with_winmail

ENV = "LETTERSHOP_TNEF_CORPUS"
_VALUE = os.environ.get(ENV, "").strip()
if not _VALUE:
    pytest.skip(
        f"real-world winmail.dat corpus not run: set {ENV} to a folder of *.tnef", allow_module_level=True
    )
ROOT = Path(_VALUE)
CUTS = 24  # cut points tried per file, spread over it

# tnefparse's tests/test_decoding.py: the attachments it finds in its examples
KNOWN = {
    "two-files.tnef": ["AUTHORS", "README"],
    "data-before-name.tnef": ["AUTOEXEC.BAT", "CONFIG.SYS", "boot.ini"],
    "MAPI_ATTACH_DATA_OBJ.tnef": ["VIA_Nytt_1402.doc", "VIA_Nytt_1402.pdf", "VIA_Nytt_14021.htm"],
    "MAPI_OBJECT.tnef": ["Untitled_Attachment"],
    "long-filename.tnef": ["allproductsmar2000.dat"],
    "missing-filenames.tnef": [
        "generpts.src",
        "TechlibDEC99.doc",
        "TechlibDEC99-JAN00.doc",
        "TechlibNOV99.doc",
    ],
    "multi-value-attribute.tnef": ["208225__5_seconds__Voice_Mail.mp3"],
    "one-file.tnef": ["AUTHORS"],
    "unicode-mapi-attr-name.tnef": ["spaconsole2.cfg", "image001.png", "image002.png", "image003.png"],
    "unicode-mapi-attr.tnef": ["example.dat"],
    "umlaut.tnef": ["TBZ PARIV GmbH.jpg", "image003.jpg", "UmlautAnhang-äüö.txt"],
    "bad_checksum.tnef": ["image001.png"],
    "IPM-DistList.tnef": ["Untitled Attachment"],
    "body.tnef": [],
    "garbage-at-end.tnef": [],
    "multi-name-property.tnef": [],
}


def blobs() -> list[Path]:
    if not ROOT.is_dir():
        pytest.fail(f"{ENV}={ROOT} is not a folder", pytrace=False)
    found = sorted(ROOT.glob("*.tnef"))
    assert found, f"{ENV}={ROOT} holds no *.tnef file"
    return found


@pytest.mark.parametrize("path", blobs(), ids=lambda path: path.name)
def test_given_a_real_winmail_dat_when_read_then_the_attachments_other_readers_find(path: Path) -> None:
    files = read_tnef(path.read_bytes())
    if path.name in KNOWN:
        assert [file.name for file in files] == KNOWN[path.name]
    assert not any(file.cut for file in files)


@pytest.mark.parametrize("path", blobs(), ids=lambda path: path.name)
def test_given_any_cut_of_a_real_winmail_dat_when_read_then_the_whole_attachments_before_it(
    path: Path,
) -> None:
    blob = path.read_bytes()
    whole = read_tnef(blob)
    for cut in sorted({len(blob) * step // CUTS for step in range(CUTS)} | {len(blob) - 1, len(blob) - 2}):
        try:
            files = read_tnef(blob[:cut])
        except TnefError:
            assert cut < 4, f"cut at {cut} refused"
            continue
        except BoundExceeded:
            pytest.fail(f"cut at {cut}: a bound the whole file does not exceed")
        assert len(files) <= len(whole)
        for index, file in enumerate(files):
            if not file.cut and not file.embedded:
                assert file.content == whole[index].content, f"cut at {cut}: attachment {index} changed"


def test_given_the_bad_checksum_example_cut_in_its_last_attribute_when_parsed_then_its_image_is_read() -> (
    None
):
    # bad_checksum.tnef ends 2 bytes short of its last attribute (the attAttachment list of its one image)
    path = ROOT / "bad_checksum.tnef"
    if not path.is_file():
        pytest.skip(f"{path.name} is not in {ROOT}")
    parsed = parse_message(with_winmail(path.read_bytes()), ["*.png"])
    assert [(file.filename, len(file.content), file.problem) for file in parsed.import_files] == [
        ("image001.png", 1_533_127, None)
    ]
