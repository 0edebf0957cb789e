"""`make build` and `make deploy` need no global `sam`, and `make build` proves its artifact.

* The Makefile, through ``make -n`` (nothing is run; make only evaluates its ``$(shell ...)``
  variables) with every ``sam`` taken off ``PATH`` and make's own variables from an outer ``make
  test`` dropped: once as the checkout is, once with ``-B`` (a fresh machine: every stamp stale).
* ``tools/check_artifact.py`` on tiny fake build folders, imported by this test's interpreter in
  place of the Lambda runtime: one line per function, a missing module or a module found only in
  ``src/`` fails, and the rebuild for this machine's architecture goes through a fake ``sam``.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from devstack.aws import load_template
from tools import check_artifact

ROOT = Path(__file__).resolve().parents[2]
MAKE = shutil.which("make")
SAM = ".venv-tools/aws-sam-cli/bin/sam"
CHECK = ("-m", "tools.check_artifact")
# Variables an outer `make test` passes down, and ARGS from a developer's shell.
MAKE_ENV = ("MAKEFLAGS", "MFLAGS", "GNUMAKEFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "MAKEFILES", "ARGS")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")

needs_make = pytest.mark.skipif(MAKE is None, reason="make is not installed")


# ------------------------------------------------------------------------------ the Makefile


def _path_without_sam() -> str:
    return os.pathsep.join(
        folder
        for folder in os.environ.get("PATH", "").split(os.pathsep)
        if folder and not (Path(folder) / "sam").exists()
    )


def make_dry_run(*arguments: str) -> list[str]:
    """The commands ``make -n`` would run, continuation lines joined."""
    assert MAKE is not None
    env = {name: value for name, value in os.environ.items() if name not in MAKE_ENV}
    env["PATH"] = _path_without_sam()
    assert shutil.which("sam", path=env["PATH"]) is None
    completed = subprocess.run(
        [MAKE, "--no-print-directory", "-n", "-C", str(ROOT), *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    commands: list[str] = []
    pending = ""
    for line in completed.stdout.splitlines():
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        commands.append(pending + line)
        pending = ""
    return commands


def split_command(command: str) -> tuple[dict[str, str], list[str]]:
    """``A=1 B=2 prog args`` -> ({A: 1, B: 2}, [prog, args])."""
    try:
        words = shlex.split(command)
    except ValueError:  # shell that shlex cannot read (not one of the commands looked at)
        return {}, command.split()
    env: dict[str, str] = {}
    while words and ASSIGNMENT.match(words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    return env, words


def find(commands: list[str], *program: str) -> int:
    """The index of the one command whose words start with ``program``."""
    found = [
        i for i, command in enumerate(commands) if split_command(command)[1][: len(program)] == list(program)
    ]
    assert len(found) == 1, (program, commands)
    return found[0]


@needs_make
@pytest.mark.parametrize("fresh", [False, True], ids=["as-is", "fresh-machine"])
def test_build_and_deploy_use_the_sam_cli_of_venv_tools(fresh: bool) -> None:
    commands = make_dry_run(*(["-B"] if fresh else []), "build", "deploy", "ARGS=--help")

    build = find(commands, SAM, "build")
    check = find(commands, ".venv/bin/python", *CHECK)
    deploy = find(commands, SAM, "deploy")
    assert build < check < deploy  # the artifact is checked after sam build, before any deploy

    build_env, build_words = split_command(commands[build])
    assert build_words == [SAM, "build"]
    assert build_env["SAM_CLI_TELEMETRY"] == "0"
    python_dir, _, rest = build_env["PATH"].partition(":")
    assert rest == "$PATH"
    assert (Path(python_dir) / "python3.13").exists()  # sam build needs Python 3.13 first on PATH

    check_env, check_words = split_command(commands[check])
    assert check_words[check_words.index("--sam") + 1] == SAM
    assert check_words[check_words.index("--runtime-python") + 1] == ".venv-tools/lambda-runtime/bin/python"
    assert check_env["PATH"] == build_env["PATH"]  # its own sam build needs Python 3.13 too

    deploy_env, deploy_words = split_command(commands[deploy])
    assert deploy_words == [SAM, "deploy", "--help"]
    assert deploy_env["SAM_CLI_TELEMETRY"] == "0"

    # No command runs a bare `sam` from PATH.
    assert not [c for c in commands if "sam" in split_command(c)[1][:1]]
    if fresh:  # on a fresh machine the SAM CLI and the runtime are installed before their first use
        tools = next(i for i, c in enumerate(commands) if "requirements-tools.txt" in c)
        runtime = next(i for i, c in enumerate(commands) if "-r requirements-lambda-runtime.txt" in c)
        assert tools < build
        assert runtime < check
        assert "-m venv .venv-tools/lambda-runtime" in " ".join(commands[:runtime])


@needs_make
@pytest.mark.parametrize(
    ("arguments", "expected"),
    [((), ["--guided"]), (("ARGS=--config-env prod",), ["--config-env", "prod"]), (("ARGS=",), [])],
    ids=["default-guided", "prod", "empty"],
)
def test_deploy_passes_args_to_sam_deploy(arguments: tuple[str, ...], expected: list[str]) -> None:
    commands = make_dry_run("deploy", *arguments)
    assert split_command(commands[find(commands, SAM, "deploy")])[1] == [SAM, "deploy", *expected]


# ------------------------------------------------------------------- the template and the pins


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==(\S+)", line.strip())
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def test_the_functions_of_the_template() -> None:
    functions = {
        f.logical_id: f for f in check_artifact.lambda_functions(load_template(ROOT / "template.yaml"))
    }
    assert functions["PollFunction"].handler == "handlers.poll.handler"
    assert functions["ScheduleSyncFunction"].handler == "handlers.schedules.handler"
    for function in functions.values():
        assert (function.runtime, function.architecture, function.code_uri) == ("python3.13", "arm64", "src/")
        assert function.environment["POWERTOOLS_LOG_LEVEL"] == "INFO"  # the parameter's default
    arns = functions["ScheduleSyncFunction"].environment
    assert arns["LETTERSHOP_POLL_FUNCTION_ARN"].startswith("arn:aws:lambda:")
    assert arns["LETTERSHOP_SCHEDULER_ROLE_ARN"].startswith("arn:aws:iam::")


def test_the_runtime_pins_match_the_layer_and_the_tests() -> None:
    """The import check runs the Powertools of the template's layer and the boto3 the tests use."""
    runtime = _pins(ROOT / "requirements-lambda-runtime.txt")
    dev = _pins(ROOT / "requirements-dev.txt")
    template = load_template(ROOT / "template.yaml")
    layers = {v for f in check_artifact.lambda_functions(template) for v in f.layer_versions}
    assert set(runtime) == {"aws-lambda-powertools", "boto3"}
    assert layers == {runtime["aws-lambda-powertools"]} == {dev["aws-lambda-powertools"]}
    assert runtime["boto3"] == dev["boto3"]


def test_retargeted_changes_only_the_architectures() -> None:
    template = load_template(ROOT / "template.yaml")
    copy = check_artifact.retargeted(template, "x86_64")
    assert {f.architecture for f in check_artifact.lambda_functions(copy)} == {"x86_64"}
    copy["Globals"]["Function"]["Architectures"] = template["Globals"]["Function"]["Architectures"]
    assert copy == template
    assert template["Globals"]["Function"]["Architectures"] == ["arm64"]  # the original is untouched


# ----------------------------------------------------------------- the check on fake builds

POWERTOOLS = importlib.metadata.version("aws-lambda-powertools")
OTHER = "x86_64" if check_artifact.MACHINES.get(os.uname().machine) == "arm64" else "arm64"
HERE = "arm64" if OTHER == "x86_64" else "x86_64"

TEMPLATE = """\
Parameters:
  PowertoolsLayer:
    Type: AWS::SSM::Parameter::Value<String>
    Default: /aws/service/powertools/python/{arch}/python3.13/{powertools}
  LogLevel: {{Type: String, Default: WARNING}}
Globals:
  Function:
    Runtime: python3.13
    Architectures: [{arch}]
    Layers: [!Ref PowertoolsLayer]
    Environment: {{Variables: {{POWERTOOLS_LOG_LEVEL: !Ref LogLevel}}}}
Resources:
  Queue: {{Type: AWS::SQS::Queue}}
{functions}
"""
FUNCTION = """\
  {name}:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: {code_uri}
      Handler: {handler}
      Environment: {{Variables: {{QUEUE_ARN: !GetAtt Queue.Arn}}}}
"""
# Each module checks at import what Lambda and the template give it.
HANDLERS = {
    "good.py": """\
        import os, sys
        from aws_lambda_powertools import Logger
        assert os.environ["QUEUE_ARN"].startswith("arn:aws:sqs:"), os.environ["QUEUE_ARN"]
        assert os.environ["POWERTOOLS_LOG_LEVEL"] == "WARNING"
        assert os.environ["AWS_DEFAULT_REGION"] and os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        assert sys.flags.isolated
        logger = Logger()
        def handler(event, context):
            return event
        """,
    "missing.py": "import tnefparse_never_packaged\ndef handler(event, context): ...\n",
    "project.py": "import settings  # only in src/, not in the package\ndef handler(event, context): ...\n",
    "not_callable.py": "handler = 42\n",
}


def write_tree(folder: Path, handlers: dict[str, str], *, arch: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in handlers.items():
        (folder / name).write_text(textwrap.dedent(source), encoding="utf-8")
    (folder / "tnefparse-1.4.0.dist-info").mkdir(exist_ok=True)
    if arch:
        (folder / "_native.cpython-313-linux-gnu.so").write_bytes(elf_header(arch))
    return folder


def elf_header(arch: str) -> bytes:
    machine = {"x86_64": 62, "arm64": 183}[arch]
    return b"\x7fELF\x02\x01\x01" + bytes(11) + machine.to_bytes(2, "little") + bytes(44)


def write_build(root: Path, functions: dict[str, str], *, arch: str, powertools: str = POWERTOOLS) -> Path:
    """``root/build``: a built template and one folder per function (``name -> handler``)."""
    build = root / "build"
    parts = []
    for name, handler in functions.items():
        write_tree(
            build / name, {handler.partition(".")[0] + ".py": HANDLERS[handler.partition(".")[0] + ".py"]}
        )
        parts.append(FUNCTION.format(name=name, code_uri=name, handler=handler))
    (build / "template.yaml").write_text(
        TEMPLATE.format(arch=arch, powertools=powertools, functions="".join(parts)), encoding="utf-8"
    )
    return build


def run_check(build: Path, *, machine: str, template: Path | None = None, sam: Path | None = None) -> int:
    return check_artifact.main(
        [
            *("--build-dir", str(build), "--runtime-python", sys.executable, "--machine", machine),
            *("--template", str(template or build / "template.yaml")),
            *("--sam", str(sam or "/nonexistent/sam")),
        ]
    )


def result_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(("OK", "FAIL"))]


def test_one_line_per_function_and_failure_for_a_missing_module(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build = write_build(
        tmp_path,
        {
            "GoodFunction": "good.handler",
            "MissingFunction": "missing.handler",
            "ProjectFunction": "project.handler",
            "NotCallableFunction": "not_callable.handler",
        },
        arch=HERE,
    )

    assert run_check(build, machine=HERE) == 1

    lines = result_lines(capsys.readouterr().out)
    assert lines[0].startswith("OK    GoodFunction (good.handler) imports from ")
    assert lines[1] == (
        "FAIL  MissingFunction (missing.handler): "
        "ModuleNotFoundError: No module named 'tnefparse_never_packaged' (missing.py:1)"
    )
    assert lines[2] == (
        "FAIL  ProjectFunction (project.handler): "
        "ModuleNotFoundError: No module named 'settings' (project.py:1)"
    )
    assert lines[3].startswith("FAIL  NotCallableFunction (not_callable.handler): TypeError: ")
    assert len(lines) == 4


def test_all_ok_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build = write_build(tmp_path, {"GoodFunction": "good.handler"}, arch=HERE)
    assert run_check(build, machine=HERE) == 0
    assert [line.split()[:2] for line in result_lines(capsys.readouterr().out)] == [["OK", "GoodFunction"]]


@pytest.mark.parametrize(
    "planted", ["cli/__init__.py", "typer-0.15.1.dist-info/METADATA", "rich/__init__.py"]
)
def test_the_operators_command_line_in_a_function_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], planted: str
) -> None:
    build = write_build(tmp_path, {"GoodFunction": "good.handler"}, arch=HERE)
    (build / "GoodFunction" / planted).parent.mkdir(parents=True)
    (build / "GoodFunction" / planted).write_text("", encoding="utf-8")

    assert run_check(build, machine=HERE) == 1

    name = planted.partition("/")[0].partition("-")[0]
    assert result_lines(capsys.readouterr().out) == [
        f"FAIL  GoodFunction (good.handler): {name} belongs to the operator's command line, "
        "not in the function's package"
    ]


def test_a_layer_of_another_powertools_version_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build = write_build(tmp_path, {"GoodFunction": "good.handler"}, arch=HERE, powertools="0.0.1")
    assert run_check(build, machine=HERE) == 1
    assert "FAIL  the functions' Powertools layer is 0.0.1" in capsys.readouterr().out


def test_a_native_library_of_another_architecture_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build = write_build(tmp_path, {"GoodFunction": "good.handler"}, arch=HERE)
    (build / "GoodFunction" / "_native.so").write_bytes(elf_header(OTHER))
    assert run_check(build, machine=HERE) == 1
    assert f"_native.so is built for {OTHER}, not {HERE}" in capsys.readouterr().out


FAKE_SAM = """\
#!{python}
# `sam build` of the test: copies each function's CodeUri (relative to --base-dir) into --build-dir.
import json, shutil, sys
from pathlib import Path
args = dict(zip(sys.argv[2::2], sys.argv[3::2]))
template = json.loads(Path(args["--template-file"]).read_text())
build = Path(args["--build-dir"])
Path("sam-args.json").write_text(json.dumps(sys.argv[1:]))
for name, resource in template["Resources"].items():
    if resource["Type"] == "AWS::Serverless::Function":
        assert template["Globals"]["Function"]["Architectures"] == ["{machine}"]
        shutil.copytree(Path(args["--base-dir"]) / resource["Properties"]["CodeUri"], build / name)
        if "{native}":
            (build / name / "_native.so").write_bytes(bytes.fromhex("{native}"))
        resource["Properties"]["CodeUri"] = name
(build / "template.yaml").write_text(json.dumps(template))
"""


def write_project(tmp_path: Path, *, extra_distribution: bool = False) -> tuple[Path, Path, Path]:
    """A source template with CodeUri src/, its build for the other architecture, and a fake sam."""
    project = tmp_path / "project"
    write_tree(project / "src", {"good.py": HANDLERS["good.py"]})
    functions = FUNCTION.format(name="GoodFunction", code_uri="src/", handler="good.handler")
    template = project / "template.yaml"
    template.write_text(
        TEMPLATE.format(arch=OTHER, powertools=POWERTOOLS, functions=functions), encoding="utf-8"
    )
    build = write_build(project / ".aws-sam", {"GoodFunction": "good.handler"}, arch=OTHER)
    write_tree(build / "GoodFunction", {}, arch=OTHER)  # the other architecture's native library
    if extra_distribution:
        (build / "GoodFunction" / "typing_extensions-4.16.0.dist-info").mkdir()
    sam = tmp_path / "sam"
    sam.write_text(
        FAKE_SAM.format(python=sys.executable, machine=HERE, native=elf_header(HERE).hex()), encoding="utf-8"
    )
    sam.chmod(0o755)
    return template, build, sam


def test_another_architecture_is_checked_on_a_build_for_this_machine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template, build, sam = write_project(tmp_path)

    assert run_check(build, machine=HERE, template=template, sam=sam) == 0

    output = capsys.readouterr().out
    assert (
        f"{OTHER} wheels cannot be loaded on {HERE}: import-checking an {HERE} build of the same requirements"
    ) in output
    work = build.parent / f"check-{HERE}"
    assert result_lines(output) == [
        f"OK    GoodFunction (good.handler) imports from {work / 'build' / 'GoodFunction'}"
    ]
    sam_args = json.loads((work / "sam-args.json").read_text())
    assert sam_args[:3] == ["build", "--template-file", "template.json"]
    assert sam_args[sam_args.index("--base-dir") + 1] == "../.."  # CodeUri relative to the real template
    assert {"--cached", "--parallel"} <= set(sam_args)


def test_builds_of_different_distributions_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    template, build, sam = write_project(tmp_path, extra_distribution=True)
    assert run_check(build, machine=HERE, template=template, sam=sam) == 1
    [line] = result_lines(capsys.readouterr().out)
    assert line.startswith("FAIL  GoodFunction (good.handler): the builds differ")
    assert "typing_extensions-4.16.0" in line
