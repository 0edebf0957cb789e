"""One ``fakes.py`` for the unit tests (issue 18): a fake is written once, and a test module takes the
shared fakes (``World``, ``make_channel``, ``body_of``, ``Fake*``) from ``tests.unit.fakes``, never
from another test module (``devstack``'s fakes are shared with the integration tests)."""

import ast
from collections import Counter
from pathlib import Path

UNIT = Path(__file__).resolve().parent
SHARED = {"World", "make_channel", "body_of"}


def _trees() -> dict[str, ast.Module]:
    return {path.name: ast.parse(path.read_text(encoding="utf-8")) for path in sorted(UNIT.glob("*.py"))}


def test_no_fake_is_written_twice() -> None:
    classes = Counter(
        node.name
        for tree in _trees().values()
        for node in tree.body
        if isinstance(node, ast.ClassDef) and (node.name.startswith("Fake") or node.name in SHARED)
    )

    assert {name: count for name, count in classes.items() if count > 1} == {}


def test_shared_fakes_come_from_the_fakes_module() -> None:
    elsewhere = sorted(
        f"{file}: {node.module}.{alias.name}"
        for file, tree in _trees().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").startswith("tests.")
        and node.module != "tests.unit.fakes"
        for alias in node.names
        if alias.name in SHARED or alias.name.startswith("Fake")
    )

    assert elsewhere == []
