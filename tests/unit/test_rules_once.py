"""One rule, one place (issue 18, item 4): the script-name rule, S3's "no such object" and the
measure of a header field are each written once and imported by every caller."""

import ast
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from typer.testing import CliRunner

from adapters.script_store import script_key
from cli.channel import example_item
from cli.main import app
from domain.bounds import MAX_HEADER_FIELD_BYTES, BoundExceeded, check_header_fields, field_sizes
from domain.channel import InvalidChannel, load_channel
from domain.errors import ScriptFailed
from domain.headers import header_lines
from domain.script_name import MAX_SCRIPT_NAME, is_script_name

ROOT = Path(__file__).resolve().parents[2]
NAMES = st.text(st.characters(codec="utf-8"), max_size=MAX_SCRIPT_NAME + 5).map(lambda text: text + ".py")


def channel_takes(name: str) -> bool:
    try:
        load_channel({**example_item(), "prescript": name})
    except InvalidChannel:
        return False
    return True


def bucket_takes(name: str) -> bool:
    try:
        script_key(name, use_standard_script=True, partner_id="acme")
    except ScriptFailed:
        return False
    return True


@given(st.one_of(NAMES, st.text(max_size=20)))
@example("x\\y.py")
@example("x" * MAX_SCRIPT_NAME + ".py")
@example("line\nbreak.py")
@example("fix.py")
@example("\r0.py")
def test_the_channel_the_scripts_bucket_and_the_cli_take_the_same_script_names(name: str) -> None:
    assert channel_takes(name) == bucket_takes(name) == is_script_name(name)


def test_a_script_name_with_a_control_character_around_it_is_refused_not_trimmed() -> None:
    """Found by Hypothesis: the channel trimmed '\r0.py' to '0.py' and took it, while the scripts
    bucket and the command line refused it."""
    assert (channel_takes("\r0.py"), bucket_takes("\r0.py")) == (False, False)
    assert (channel_takes("0.py\n"), channel_takes("0.py")) == (False, True)


@pytest.mark.parametrize("name", ["x\\y.py", "x" * MAX_SCRIPT_NAME + ".py"], ids=["backslash", "too long"])
def test_script_put_refuses_a_name_no_channel_could_use(tmp_path: Path, name: str) -> None:
    script = tmp_path / "fix.py"
    script.write_text("print('hello')\n")

    result = CliRunner().invoke(app, ["script", "put", str(script), "--name", name])

    assert result.exit_code == 1
    assert f"'{name}' is not a script name (a file name ending in .py, without folders)" in result.stderr


def _string_constants(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


def test_s3s_no_such_object_codes_are_spelled_once() -> None:
    spelled = sorted(
        str(path.relative_to(ROOT))
        for folder in ("src", "cli")
        for path in (ROOT / folder).rglob("*.py")
        if _string_constants(path) & {"NoSuchKey", "NotFound", "404"}
    )

    assert spelled == ["src/adapters/aws_errors.py"]


@given(
    st.lists(
        st.tuples(
            st.sampled_from([b"", b" ", b"\t"]), st.binary(max_size=40).map(lambda b: b.strip(b"\r\n"))
        ),
        max_size=12,
    ),
    st.sampled_from([b"", b"\n", b"\r\n"]),
)
def test_a_header_fields_size_counts_each_byte_of_its_lines_once(
    lines: list[tuple[bytes, bytes]], end: bytes
) -> None:
    block = [lead + text.replace(b"\r", b"").replace(b"\n", b"") + end for lead, text in lines]

    sizes = field_sizes(block)

    assert sum(sizes) == sum(len(line) - len(end) for line in block)
    starts = [line[:1] not in (b" ", b"\t") for line in block]
    assert len(sizes) == sum(starts) + (1 if block and not starts[0] else 0)
    assert field_sizes(line.rstrip(b"\r\n") for line in block) == sizes


def test_the_screened_header_block_is_measured_as_the_parser_measures_it() -> None:
    """A header block that starts with a folded line: that line is a field of its own to both."""
    raw = b" " + b"x" * MAX_HEADER_FIELD_BYTES + b"\r\nSubject: LetterShop import\r\n\r\nbody\r\n"

    with pytest.raises(BoundExceeded) as caught:
        check_header_fields(header_lines(raw), "the message header")

    assert caught.value.bound == "max_header_field"
    assert f"a header field of {MAX_HEADER_FIELD_BYTES + 1:,} bytes" in str(caught.value)
