"""The real-world mail corpus: an *external* conformance suite, never part of this repository.

Tests find it through ``LETTERSHOP_MAIL_CORPUS`` (``make`` sets it to the corpus in the steering folder
``shared/`` when that exists beside the clone; ``.ci/run`` requires it). Tests ask for the ``mail_corpus``
fixture: without the variable every corpus test is skipped with one reason, reported at one place
(``fold_skip``), so the test summary shows one line for all of them. A variable that names a folder
that is not there fails those tests instead: whoever set it meant the corpus to run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ENV = "LETTERSHOP_MAIL_CORPUS"
NOT_MAIL = {"LICENSE", "README", "README.md"}
# The one parameter of a corpus-driven test when the corpus is absent: the test is collected, then
# skipped by the fixture (an empty parameter list would skip with a reason of its own, per test).
ABSENT = "corpus-absent"


def corpus_dir() -> Path | None:
    """The corpus folder named by the environment, or None when the variable is unset or empty."""
    value = os.environ.get(ENV, "").strip()
    return Path(value).resolve() if value else None


def messages(root: Path) -> list[Path]:
    """All ``*.eml`` files, plus files without an extension that hold something (the corpus has one
    such file, ``sample_output_multipart``, and it is empty - not a message)."""
    files = sorted(root.rglob("*.eml"))
    files += sorted(
        path
        for path in root.rglob("*")
        if path.is_file() and not path.suffix and path.name not in NOT_MAIL and path.stat().st_size > 0
    )
    return files


def message_names() -> list[str]:
    """The corpus messages as paths relative to the corpus, for ``pytest.mark.parametrize``."""
    root = corpus_dir()
    if root is None or not root.is_dir():
        return [ABSENT]
    return [str(path.relative_to(root)) for path in messages(root)]


SKIP_REASON = f"real-world mail corpus not run: set {ENV} to its folder (.ci/run does)"


def require() -> Path:
    """The corpus folder, for the ``mail_corpus`` fixture: skip (unset) or fail (set, but missing)."""
    root = corpus_dir()
    if root is None:
        pytest.skip(SKIP_REASON)
    if not root.is_dir():
        pytest.fail(f"{ENV}={root} is not a folder", pytrace=False)
    return root


def fold_skip(report: pytest.TestReport) -> None:
    """Reports a corpus skip at this module rather than at each test, so pytest folds them all into
    one summary line (it folds skips by file, line and reason)."""
    if report.skipped and isinstance(report.longrepr, tuple) and SKIP_REASON in str(report.longrepr[2]):
        report.longrepr = (__file__, 1, report.longrepr[2])
