"""Prove the artifact of ``sam build``: import each function's handler the way Lambda will.

For every Python function of the built template (``.aws-sam/build/template.yaml``) the handler
(``Handler: handlers.poll.handler``) is imported by a fresh interpreter of the Lambda runtime's
stand-in, ``.venv-tools/lambda-runtime`` (Python 3.13 with only the Powertools of the layer and
boto3, ``requirements-lambda-runtime.txt``), run isolated (``python -I``: no ``PYTHONPATH``, no
current folder, no user site) with nothing but the function's build folder put in front of
``sys.path`` and a Lambda-like environment of dummy values (no project ``.venv``, no ``src/``). A
dependency that ``src/requirements.txt`` lacks, a module missing from the package or an import-time
error fails, one line per function; any failure makes the exit status 1.

Native wheels: the package is built for the template's architecture (arm64). When this machine
cannot load that architecture's wheels (pydantic-core), the same template with ``Architectures`` set
to the machine's is built once more (into ``.aws-sam/check-<machine>/build``, with its own sam cache)
and that build is imported instead. The two builds must then hold the same distributions, and every native
library of the real build must be for the real architecture.

Usage (``make build`` runs it after ``sam build``)::

    python -m tools.check_artifact [--build-dir .aws-sam/build] [--sam PATH] [--runtime-python PATH]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.aws import load_template

ROOT = Path(__file__).resolve().parent.parent
# Dummy account and region of the environment the handlers are imported in: nothing is called.
REGION = "eu-central-1"
ACCOUNT = "123456789012"
STACK = "lettershop-artifact-check"

# platform.machine() and ELF e_machine values, as Lambda names the architectures.
MACHINES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
ELF_MACHINES = {62: "x86_64", 183: "arm64"}
# The public Powertools layer's SSM parameter (or ARN) names its version last.
POWERTOOLS_LAYER_VERSION = re.compile(r"/powertools/python/.*?(\d+\.\d+\.\d+)$")
IMPORT_TIMEOUT_SECONDS = 120
# The operator's command line (cli/) and the libraries only it uses never go into a function
# (DESIGN §2): a package or distribution of these names in a build folder fails the check.
OPERATOR_ONLY = ("cli", "typer", "rich")

# Runs in the Lambda runtime's interpreter (python -I): argv = folder, module, attribute, result file.
IMPORT_CHECK = r"""
import importlib, json, os, sys, sysconfig, traceback

folder, module, attribute, result_file = sys.argv[1:5]
sys.path.insert(0, folder)
result = {"error": None, "foreign": []}
try:
    handler = getattr(importlib.import_module(module), attribute)
    if not callable(handler):
        raise TypeError(f"{module}.{attribute} is {type(handler).__name__}, not a function")
except BaseException as error:
    result["error"] = f"{type(error).__name__}: {error}"
    inside = [f for f in traceback.extract_tb(error.__traceback__) if f.filename.startswith(folder + os.sep)]
    if inside:  # where in the package it happened
        result["error"] += f" ({os.path.relpath(inside[-1].filename, folder)}:{inside[-1].lineno})"
paths = sysconfig.get_paths()
kinds = ("stdlib", "platstdlib", "purelib", "platlib")
roots = [os.path.realpath(p) + os.sep for p in (folder, *(paths[kind] for kind in kinds))]
for name, loaded in sorted(sys.modules.items()):
    file = getattr(loaded, "__file__", None)
    if file and not any(os.path.realpath(file).startswith(root) for root in roots):
        result["foreign"].append(f"{name} ({file})")
with open(result_file, "w", encoding="utf-8") as out:
    json.dump(result, out)
"""

PROBE = r"""
import importlib.metadata as metadata, json, sys

def version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None

print(json.dumps({"python": "%d.%d" % sys.version_info[:2],
                  "powertools": version("aws-lambda-powertools"), "boto3": version("boto3")}))
"""


# ------------------------------------------------------------------------------ the template


@dataclass(frozen=True)
class Function:
    """One AWS::Serverless::Function, its properties merged with the template's Globals."""

    logical_id: str
    handler: str
    runtime: str
    architecture: str
    code_uri: str
    memory_size: int
    environment: dict[str, str]
    layer_versions: tuple[str, ...]  # Powertools versions its layers name
    timeout: int = 3  # seconds, Lambda's default
    ephemeral_storage_mb: int = 512  # the size of /tmp, Lambda's default

    @property
    def module(self) -> str:
        return self.handler.rpartition(".")[0]

    @property
    def attribute(self) -> str:
        return self.handler.rpartition(".")[2]

    @property
    def is_python_zip(self) -> bool:
        return self.runtime.startswith("python") and bool(self.code_uri) and "." in self.handler


def lambda_functions(template: Mapping[str, Any]) -> list[Function]:
    """The template's functions in its order, with Globals applied the way SAM applies them."""
    resources: Mapping[str, Any] = template.get("Resources") or {}
    parameters: Mapping[str, Any] = template.get("Parameters") or {}
    defaults: Mapping[str, Any] = (template.get("Globals") or {}).get("Function") or {}
    functions = []
    for logical_id, resource in resources.items():
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::Serverless::Function":
            continue
        props: Mapping[str, Any] = resource.get("Properties") or {}

        def prop(name: str, fallback: Any, props: Mapping[str, Any] = props) -> Any:
            return props.get(name, defaults.get(name, fallback))

        if prop("PackageType", "Zip") != "Zip":
            continue
        variables = {
            **((defaults.get("Environment") or {}).get("Variables") or {}),
            **((props.get("Environment") or {}).get("Variables") or {}),
        }
        layers = [*(defaults.get("Layers") or []), *(props.get("Layers") or [])]
        code_uri = prop("CodeUri", "")
        functions.append(
            Function(
                logical_id=logical_id,
                handler=str(prop("Handler", "")),
                runtime=str(prop("Runtime", "")),
                architecture=str((prop("Architectures", None) or ["x86_64"])[0]),
                code_uri=code_uri if isinstance(code_uri, str) else "",
                memory_size=int(prop("MemorySize", 128)),
                environment={
                    name: dummy_value(value, resources, parameters) for name, value in variables.items()
                },
                layer_versions=tuple(_powertools_versions(layers, parameters)),
                timeout=int(prop("Timeout", 3)),
                ephemeral_storage_mb=int((prop("EphemeralStorage", None) or {}).get("Size", 512)),
            )
        )
    return functions


def _powertools_versions(layers: Sequence[Any], parameters: Mapping[str, Any]) -> Iterator[str]:
    for layer in layers:
        name = layer
        if isinstance(layer, dict) and isinstance(layer.get("Ref"), str):
            name = (parameters.get(layer["Ref"]) or {}).get("Default")
        match = POWERTOOLS_LAYER_VERSION.search(name) if isinstance(name, str) else None
        if match:
            yield match.group(1)


def dummy_value(value: Any, resources: Mapping[str, Any], parameters: Mapping[str, Any]) -> str:
    """A value of the right shape for an environment variable of the template: literals as they are,
    parameters by their default, resources by a made-up name or ARN."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, dict) and len(value) == 1:
        [(function, argument)] = value.items()
        if function == "Ref" and isinstance(argument, str):
            return _ref_value(argument, parameters)
        if function == "Fn::GetAtt" and isinstance(argument, list) and len(argument) == 2:
            logical_id, attribute = (str(part) for part in argument)
            if attribute.endswith("Arn"):
                kind = str((resources.get(logical_id) or {}).get("Type", ""))
                return _dummy_arn(kind, f"{STACK}-{logical_id.lower()}")
            return f"{STACK}-{logical_id.lower()}-{attribute.lower()}"
    return f"{STACK}-dummy"


def _ref_value(name: str, parameters: Mapping[str, Any]) -> str:
    pseudo = {"AWS::StackName": STACK, "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}
    if name in pseudo:
        return pseudo[name]
    default = (parameters.get(name) or {}).get("Default")
    if isinstance(default, str | int | float) and not isinstance(default, bool):
        return str(default)
    return f"{STACK}-{name.lower()}"


def _dummy_arn(resource_type: str, name: str) -> str:
    if resource_type in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    if resource_type == "AWS::IAM::Role":
        return f"arn:aws:iam::{ACCOUNT}:role/{name}"
    if resource_type == "AWS::DynamoDB::Table":
        return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
    service = resource_type.split("::")[1].lower() if resource_type.count("::") == 2 else "unknown"
    return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{name}"


def retargeted(template: Mapping[str, Any], architecture: str) -> dict[str, Any]:
    """A copy of the template whose functions are all built for ``architecture``."""
    result = copy.deepcopy(dict(template))
    result.setdefault("Globals", {}).setdefault("Function", {})["Architectures"] = [architecture]
    for resource in (result.get("Resources") or {}).values():
        props = resource.get("Properties") if isinstance(resource, dict) else None
        is_function = isinstance(resource, dict) and resource.get("Type") == "AWS::Serverless::Function"
        if is_function and isinstance(props, dict) and "Architectures" in props:
            props["Architectures"] = [architecture]
    return result


# ----------------------------------------------------------------------------- the package


def native_libraries(folder: Path) -> Iterator[tuple[Path, str]]:
    """Every ELF shared library under ``folder`` with the architecture it was built for."""
    for path in sorted(folder.rglob("*.so*")):
        if not path.is_file() or not (path.name.endswith(".so") or ".so." in path.name):
            continue
        with path.open("rb") as fh:
            head = fh.read(20)
        if len(head) < 20 or head[:4] != b"\x7fELF":
            continue
        machine = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
        yield path, ELF_MACHINES.get(machine, f"ELF machine {machine}")


def wrong_native_libraries(folder: Path, architecture: str) -> list[str]:
    return [
        f"{path.relative_to(folder)} is built for {found}, not {architecture}"
        for path, found in native_libraries(folder)
        if found != architecture
    ]


def operator_only(folder: Path) -> list[str]:
    """Problems: what of the operator's command line a function's build folder holds."""
    found = [
        name
        for name in OPERATOR_ONLY
        if (folder / name).exists()
        or (folder / f"{name}.py").exists()
        or any(folder.glob(f"{name}-*.dist-info"))
    ]
    return [f"{name} belongs to the operator's command line, not in the function's package" for name in found]


def distributions(folder: Path) -> set[str]:
    """``name-version`` of every distribution installed into the package."""
    return {path.name.removesuffix(".dist-info") for path in folder.glob("*.dist-info")}


def distribution_difference(built: Path, checked: Path) -> list[str]:
    only_built = sorted(distributions(built) - distributions(checked))
    only_checked = sorted(distributions(checked) - distributions(built))
    if not only_built and not only_checked:
        return []
    return [
        f"the builds differ: only in {_show(built)} {only_built}, only in {_show(checked)} {only_checked}"
    ]


# --------------------------------------------------------------------------------- running


@dataclass(frozen=True)
class Runtime:
    python: Path
    version: str
    powertools: str | None
    boto3: str | None


def probe_runtime(python: Path) -> Runtime:
    completed = subprocess.run(
        [str(python), "-I", "-c", PROBE], capture_output=True, text=True, check=True, env=_clean_env()
    )
    info = json.loads(completed.stdout)
    return Runtime(python, info["python"], info["powertools"], info["boto3"])


def lambda_environment(function: Function, folder: Path) -> dict[str, str]:
    """What Lambda sets (dummy credentials, no real account), then the function's own variables."""
    return {
        **_clean_env(),
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "offline",
        "AWS_SECRET_ACCESS_KEY": "offline",
        "AWS_SESSION_TOKEN": "offline",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_LAMBDA_FUNCTION_NAME": f"{STACK}-{function.logical_id}",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{STACK}-{function.logical_id}",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{function.runtime}",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
        "LAMBDA_TASK_ROOT": str(folder),
        "_HANDLER": function.handler,
        "TZ": ":UTC",
        **function.environment,
    }


def _clean_env() -> dict[str, str]:
    """Nothing of the caller's environment but a plain PATH and locale."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


def import_handler(runtime: Runtime, folder: Path, function: Function) -> list[str]:
    """Problems importing the function's handler from ``folder`` alone; empty when it imports."""
    with tempfile.TemporaryDirectory(prefix="check-artifact-") as scratch:
        result_file = Path(scratch) / "result.json"
        try:
            completed = subprocess.run(
                [
                    str(runtime.python),
                    "-I",
                    "-c",
                    IMPORT_CHECK,
                    *(str(folder), function.module, function.attribute, str(result_file)),
                ],
                capture_output=True,
                text=True,
                cwd=scratch,
                env=lambda_environment(function, folder),
                timeout=IMPORT_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return [f"the import did not finish within {IMPORT_TIMEOUT_SECONDS} s"]
        if not result_file.exists():
            output = (completed.stderr or completed.stdout).strip().splitlines()
            return [f"the interpreter ended with status {completed.returncode}: {' | '.join(output[-3:])}"]
        result = json.loads(result_file.read_text(encoding="utf-8"))
    problems = []
    if result["error"]:
        problems.append(str(result["error"]))
    if result["foreign"]:
        problems.append(f"imported from outside the build folder and the runtime: {result['foreign'][:3]}")
    return problems


def sam_build(sam: Path, template: Path, work_dir: Path, architecture: str) -> tuple[int, Path]:
    """``sam build`` of a copy of ``template`` retargeted to ``architecture``: the exit status and
    the build folder. Everything of that build (its build.toml, cache and dependency folders, which
    sam keeps beside the build folder and in the working folder) stays inside ``work_dir``, so the
    two builds do not invalidate each other's cache."""
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "template.json").write_text(
        json.dumps(retargeted(load_template(template), architecture), indent=1, default=str), "utf-8"
    )
    command = [
        *(str(sam), "build", "--template-file", "template.json"),
        # CodeUri stays relative to the real template's folder, not to the copy's
        *("--base-dir", os.path.relpath(template.parent, work_dir)),
        *("--build-dir", "build", "--cache-dir", "cache", "--cached", "--parallel"),
    ]
    print(f"$ cd {_show(work_dir)} && {' '.join(command)}", flush=True)
    environment = {**os.environ, "SAM_CLI_TELEMETRY": "0"}
    status = subprocess.run(command, cwd=work_dir, env=environment, check=False).returncode
    return status, work_dir / "build"


def _show(path: Path) -> str:
    try:
        return str(path.absolute().relative_to(ROOT))
    except ValueError:
        return str(path)


# -------------------------------------------------------------------------------- the check


def check(build_dir: Path, template: Path, sam: Path, runtime_python: Path, machine: str) -> int:
    """Print one line per function (and per runtime problem); the number of failures."""
    built_template = build_dir / "template.yaml"
    if not built_template.exists():
        print(f"FAIL  {_show(built_template)} is missing: run sam build first")
        return 1
    functions = [f for f in lambda_functions(load_template(built_template)) if f.is_python_zip]
    if not functions:
        print(f"FAIL  {_show(built_template)} has no Python zip functions to check")
        return 1
    try:
        runtime = probe_runtime(runtime_python)
    except (OSError, subprocess.CalledProcessError, ValueError) as error:
        print(f"FAIL  {_show(runtime_python)} does not run: {error}")
        return 1
    print(
        f"import check: {_show(runtime.python)} -I (Python {runtime.version}, "
        f"aws-lambda-powertools {runtime.powertools}, boto3 {runtime.boto3}) "
        "with nothing but the function's build folder in front of sys.path"
    )
    failures = _check_layer(functions, runtime, template)
    built = {f.logical_id: built_template.parent / f.code_uri for f in functions}
    foreign = sorted({f.architecture for f in functions if f.architecture != machine})
    if not foreign:
        imported = built
    else:
        work_dir = build_dir.with_name(f"check-{machine}")
        print(
            f"{', '.join(foreign)} wheels cannot be loaded on {machine}: import-checking an {machine} "
            f"build of the same requirements ({_show(work_dir / 'build')})",
            flush=True,
        )
        status, check_dir = sam_build(sam, template, work_dir, machine)
        if status != 0:
            print(f"FAIL  sam build for {machine} ended with status {status}")
            return failures + 1
        imported = {
            other.logical_id: check_dir / other.code_uri
            for other in lambda_functions(load_template(check_dir / "template.yaml"))
            if other.logical_id in built and other.code_uri
        }
    for function in functions:
        folder = imported.get(function.logical_id, built[function.logical_id])
        problems = _check_function(function, runtime, built[function.logical_id], folder)
        if problems:
            failures += 1
            print(f"FAIL  {function.logical_id} ({function.handler}): {'; '.join(problems)}")
        else:
            print(f"OK    {function.logical_id} ({function.handler}) imports from {_show(folder)}")
    return failures


def _check_layer(functions: Sequence[Function], runtime: Runtime, template: Path) -> int:
    """Failures: Powertools layers of another version than the import check's."""
    failures = 0
    for version in sorted({v for f in functions for v in f.layer_versions}):
        if runtime.powertools != version:
            print(
                f"FAIL  the functions' Powertools layer is {version} ({_show(template)}), the import check "
                f"has aws-lambda-powertools {runtime.powertools}: change requirements-lambda-runtime.txt"
            )
            failures += 1
    return failures


def _check_function(function: Function, runtime: Runtime, built: Path, folder: Path) -> list[str]:
    """The built package (``built``) and the import of its handler from ``folder`` (the same, or
    the build for this machine's architecture)."""
    problems = wrong_native_libraries(built, function.architecture) + operator_only(built)
    if runtime.version != function.runtime.removeprefix("python"):
        problems.append(f"{function.runtime} in the template, Python {runtime.version} in the check")
    if folder != built:
        problems += distribution_difference(built, folder)
    return problems + import_handler(runtime, folder.resolve(), function)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--build-dir", type=Path, default=ROOT / ".aws-sam" / "build")
    parser.add_argument("--template", type=Path, default=ROOT / "template.yaml", help="the source template")
    parser.add_argument("--sam", type=Path, default=ROOT / ".venv-tools" / "aws-sam-cli" / "bin" / "sam")
    parser.add_argument(
        "--runtime-python", type=Path, default=ROOT / ".venv-tools" / "lambda-runtime" / "bin" / "python"
    )
    parser.add_argument(
        "--machine",
        default=MACHINES.get(platform.machine().lower(), platform.machine()),
        help="the architecture this machine runs (default: detected)",
    )
    args = parser.parse_args(argv)
    # absolute, not resolved: the venv's python is a symlink, and only its own path makes it the venv's
    runtime_python = args.runtime_python.absolute()
    failures = check(
        args.build_dir.absolute(), args.template.absolute(), args.sam.absolute(), runtime_python, args.machine
    )
    if failures:
        print(f"artifact check failed: {failures} problem(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
