"""The standard example postscript writes the partner's subject into every export row: as data."""

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "scripts" / "standard" / "stamp_export.py"
EXPORT = (
    "reference;status;shipment_id;product;weight_g;postage_chf;message\r\n"
    "R-1;ACCEPTED;LA1;A-POST;80;1.20;\r\n"
)


def stamped(tmp_path: Path, subject: str) -> list[str]:
    """The cells of the stamped row."""
    export = tmp_path / "export.csv"
    export.write_text(EXPORT, encoding="utf-8", newline="")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "LETTERSHOP_FILE": str(export),
        "LETTERSHOP_PARTNER_ID": "acme",
        "LETTERSHOP_SUBJECT": subject,
    }
    subprocess.run([sys.executable, "-I", str(SCRIPT)], env=env, check=True, capture_output=True, timeout=30)
    return list(csv.reader(io.StringIO(export.read_text(encoding="utf-8")), delimiter=";"))[1]


@pytest.mark.parametrize("subject", ['=HYPERLINK("http://evil.example")', "+41 order", "-1", "@SUM(A1)"])
def test_a_subject_that_looks_like_a_formula_is_stamped_as_data(tmp_path: Path, subject: str) -> None:
    assert stamped(tmp_path, subject)[-2:] == ["acme", f"'{subject}"]


def test_an_ordinary_subject_is_stamped_as_it_is(tmp_path: Path) -> None:
    assert stamped(tmp_path, "LetterShop import")[-2:] == ["acme", "LetterShop import"]
