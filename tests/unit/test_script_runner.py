"""The script runner on its own: real child processes, no servers (the S3 side is a recording fake).

Scripts here are tiny Python programs run for real with ``sys.executable -I``, exactly as in Lambda.
"""

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from adapters.script_runner import (
    MIB,
    Limits,
    ScriptRun,
    last_lines,
    remove_tree,
    run_script,
    script_environment,
)
from adapters.script_store import ScriptCache, script_key
from adapters.scripts import MAX_VARIABLE_CHARS, S3ScriptRunner
from domain.errors import ScriptFailed, TransientError
from service.ports import ScriptCall

SRC = Path(__file__).resolve().parents[2] / "src"
IMPORT = b"reference;name\r\nR-1;Anna\r\n"


@pytest.fixture
def work_root(tmp_path: Path) -> Path:
    """Where the runner makes its private folders, so a test sees every one it left behind."""
    root = tmp_path / "work"
    root.mkdir()
    return root


def run(
    body: str,
    work_root: Path,
    *,
    data: bytes = IMPORT,
    timeout: float = 10,
    limits: Limits | None = None,
    name: str = "script.py",
    env: dict[str, str] | None = None,
) -> ScriptRun:
    return run_script(
        name,
        textwrap.dedent(body).encode(),
        data,
        file_name="import.csv",
        env=script_environment(env or {"LETTERSHOP_STAGE": "pre"}),
        timeout_seconds=timeout,
        limits=limits or Limits(),
        work_root=work_root,
    )


def processes_with(marker: str) -> list[int]:
    """Pids whose command line mentions *marker* (a /proc scan: nothing may be left running)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            pids.append(int(entry.name))
    return pids


def marker_name() -> str:
    return f"marker_{uuid.uuid4().hex}.py"


# ------------------------------------------------------------------ success


def test_script_rewrites_its_file_in_a_fresh_private_folder(work_root: Path) -> None:
    result = run(
        """
        import json, os, sys
        path = os.environ["LETTERSHOP_FILE"]
        data = open(path, "rb").read()
        open(path, "wb").write(data.upper())
        print(json.dumps({
            "cwd": os.getcwd(),
            "listing": sorted(os.listdir(".")),
            "mode": oct(os.stat(".").st_mode & 0o777),
            "fds": sorted(os.listdir("/proc/self/fd")),
            "stdin": sys.stdin.read(),
            "path": sys.path,
        }))
        """,
        work_root,
    )

    assert result.ok, result.problem
    assert result.file == IMPORT.upper()
    seen = json.loads(result.stdout_tail)
    assert Path(seen["cwd"]).parent == work_root
    assert seen["listing"] == ["import.csv", "script.py"]
    assert seen["mode"] == "0o700"
    assert len(seen["fds"]) == 4  # stdin, stdout, stderr and the listing itself: nothing inherited
    assert seen["stdin"] == ""
    assert seen["cwd"] not in seen["path"]  # -I: neither the cwd nor the script's folder is importable
    assert result.workdir_removed
    assert list(work_root.iterdir()) == []


def test_environment_is_path_lang_and_the_given_values_only(
    work_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    monkeypatch.setenv("LETTERSHOP_STATE_TABLE", "state-table")
    monkeypatch.setenv("PYTHONPATH", "/somewhere")

    result = run(
        "import json, os; print(json.dumps(dict(os.environ)))",
        work_root,
        env={"LETTERSHOP_STAGE": "pre", "LETTERSHOP_SUBJECT": "nul\0in\udcffsubject"},
    )

    env = json.loads(result.stdout_tail)
    assert set(env) == {"PATH", "LANG", "LETTERSHOP_STAGE", "LETTERSHOP_SUBJECT", "LETTERSHOP_FILE"}
    assert env["LETTERSHOP_SUBJECT"] == "nulin?subject"
    assert env["LETTERSHOP_FILE"].endswith("/import.csv")


def test_limits_are_set_in_the_child(work_root: Path) -> None:
    result = run(
        """
        import resource
        for name in ("CPU", "AS", "FSIZE", "NPROC", "NOFILE", "CORE"):
            print(f"RLIMIT_{name}", *resource.getrlimit(getattr(resource, f"RLIMIT_{name}")))
        """,
        work_root,
        timeout=7,
        limits=Limits(memory_bytes=200 * MIB, file_bytes=5 * MIB, processes=50, open_files=100),
        name="limits=shown.py",  # a name with "=" is not mistaken for a limit by the launcher
    )

    limits = {
        line.split()[0]: tuple(map(int, line.split()[1:]))
        for line in result.stdout_tail.decode().splitlines()
    }
    assert limits == {
        "RLIMIT_CPU": (8, 9),
        "RLIMIT_AS": (200 * MIB, 200 * MIB),
        "RLIMIT_FSIZE": (5 * MIB, 5 * MIB),
        "RLIMIT_NPROC": (50, 50),
        "RLIMIT_NOFILE": (100, 100),
        "RLIMIT_CORE": (0, 0),
    }


# ------------------------------------------------------------------ failures


def test_non_zero_exit_fails_with_the_end_of_stderr(work_root: Path) -> None:
    result = run(
        """
        import sys
        for n in range(30):
            print(f"line {n}", file=sys.stderr)
        sys.exit(3)
        """,
        work_root,
    )

    assert (result.problem, result.exit_code, result.file) == ("exited with code 3", 3, None)
    assert last_lines(result.stderr_tail) == "\n".join(f"line {n}" for n in range(20, 30))
    assert result.workdir_removed


def test_timeout_kills_the_script(work_root: Path) -> None:
    marker = marker_name()

    result = run("import time; time.sleep(60)", work_root, timeout=1, name=marker)

    assert result.timed_out
    assert result.problem == "did not finish within 1 s and was stopped"
    assert result.duration_ms < 5000
    assert processes_with(marker) == []
    assert list(work_root.iterdir()) == []


@pytest.mark.parametrize("then", ["exit", "hang"])
def test_children_it_forked_are_killed_with_it(work_root: Path, then: str) -> None:
    marker = marker_name()
    body = f"""
        import os, time
        for _ in range(3):
            if os.fork() == 0:
                time.sleep(120)
                os._exit(0)
        {"time.sleep(120)" if then == "hang" else "print('parent done')"}
        """

    result = run(body, work_root, timeout=1 if then == "hang" else 10, name=marker)

    assert result.ok is (then == "exit")
    assert processes_with(marker) == []
    assert result.workdir_removed


# The script starts a daemon the classic way - fork, setsid, fork again - which leaves the script's
# process group and session, so the group kill cannot reach it. It waits until the daemon wrote its
# pid, then ends as *then* says.
DAEMON = """
import os, pathlib, sys, time
pidfile = pathlib.Path({pidfile!r})
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        pidfile.write_text(str(os.getpid()))
        time.sleep(120)
    os._exit(0)
while not pidfile.exists():
    time.sleep(0.01)
{then}
"""


def alive(pid: int) -> bool:
    """Whether *pid* is a live process (not gone, not a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


@pytest.mark.parametrize("then", ["print('done')", "import sys; sys.exit(3)"], ids=["ok", "failed"])
def test_a_daemon_that_left_the_group_is_killed_after_the_run(
    work_root: Path, tmp_path: Path, then: str
) -> None:
    marker = marker_name()
    pidfile = tmp_path / "daemon.pid"

    result = run(DAEMON.format(pidfile=str(pidfile), then=then), work_root, name=marker)

    daemon = int(pidfile.read_text())
    assert result.ok is (then == "print('done')")
    assert not alive(daemon)
    assert processes_with(marker) == []
    assert result.swept >= 2  # the daemon and its parent (a zombie by then), both reaped by us
    assert result.workdir_removed


def test_the_sweep_leaves_children_alone_that_the_caller_already_had(work_root: Path, tmp_path: Path) -> None:
    """In tests the caller has children of its own (Dovecot, moto): only what the script left goes."""
    before = subprocess.Popen(["sleep", "60"])  # noqa: S607
    try:
        result = run(DAEMON.format(pidfile=str(tmp_path / "daemon.pid"), then="pass"), work_root)

        assert result.ok
        assert before.poll() is None
        assert alive(before.pid)
    finally:
        before.kill()
        before.wait()


def test_endless_allocation_hits_the_memory_limit(work_root: Path) -> None:
    result = run(
        """
        blocks = []
        while True:
            blocks.append(bytearray(8 * 1024 * 1024))
        """,
        work_root,
        limits=Limits(memory_bytes=128 * MIB),
    )

    assert result.problem == "exited with code 1"
    assert b"MemoryError" in result.stderr_tail


# Measured in a fresh process: ru_maxrss is the peak of the whole life of a process, and the pytest
# process may have peaked higher long before, hiding any growth.
MEASURE_OUTPUT = """
import json, resource, sys
sys.path.insert(0, sys.argv[1])
from adapters.script_runner import Limits, run_script, script_environment

def go(body):
    return run_script("s.py", body, b"x\\n", file_name="import.csv", env=script_environment({}),
                      timeout_seconds=60, limits=Limits(output_tail_bytes=4096))

go(b"print('warm up')")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = go(sys.stdin.buffer.read())
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
tails = [len(result.stdout_tail), len(result.stderr_tail)]
print(json.dumps({"grown_kib": grown, "ok": result.ok, "tails": tails}))
"""


def test_a_hundred_megabytes_of_output_cost_the_caller_nothing() -> None:
    script = textwrap.dedent(
        """
        import sys
        block = b"x" * (1024 * 1024 - 1) + b"\\n"
        for _ in range(100):
            sys.stdout.buffer.write(block)
            sys.stderr.buffer.write(block)
        """
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", MEASURE_OUTPUT, str(SRC)],
        input=script.encode(),
        capture_output=True,
        check=True,
        timeout=120,
    )
    measured = json.loads(done.stdout)

    assert measured["ok"]
    assert measured["tails"] == [4096, 4096]
    assert measured["grown_kib"] < 20 * 1024  # 200 MB went through the pipes, not into memory


def test_a_file_beyond_the_size_limit_fails(work_root: Path) -> None:
    result = run(
        """
        import os
        with open(os.environ["LETTERSHOP_FILE"], "wb") as f:
            f.write(b"x" * (3 * 1024 * 1024))
        """,
        work_root,
        limits=Limits(file_bytes=2 * MIB),
    )

    assert result.problem == "exited with code 1"
    assert b"File too large" in result.stderr_tail


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("import os; os.remove(os.environ['LETTERSHOP_FILE'])", "deleted its file (LETTERSHOP_FILE)"),
        (
            "import os; open(os.environ['LETTERSHOP_FILE'], 'w').close()",
            "left its file (LETTERSHOP_FILE) empty",
        ),
        (
            "import os; f = os.environ['LETTERSHOP_FILE']; os.remove(f); os.symlink('/etc/hostname', f)",
            "left something at LETTERSHOP_FILE that is not a regular file",
        ),
        (
            "import os; f = os.environ['LETTERSHOP_FILE']; os.remove(f); os.mkfifo(f)",
            "left something at LETTERSHOP_FILE that is not a regular file",
        ),
    ],
    ids=["deleted", "empty", "symlink", "fifo"],
)
def test_the_file_must_be_left_as_a_non_empty_regular_file(work_root: Path, body: str, problem: str) -> None:
    result = run(body, work_root)

    assert (result.exit_code, result.problem, result.file) == (0, problem, None)
    assert result.workdir_removed


def test_folder_is_removed_even_when_the_script_locks_it(work_root: Path) -> None:
    result = run(
        """
        import os
        os.makedirs("locked/deeper")
        open("locked/deeper/file", "w").write("x")
        os.chmod("locked/deeper", 0)
        os.chmod("locked", 0)
        """,
        work_root,
    )

    assert result.ok
    assert result.workdir_removed
    assert list(work_root.iterdir()) == []


def test_remove_tree_of_a_missing_folder_reports_it_gone(tmp_path: Path) -> None:
    assert remove_tree(tmp_path / "never-made")


def test_unsafe_names_are_refused_before_anything_runs(work_root: Path) -> None:
    with pytest.raises(ValueError, match="unsafe"):
        run("print(1)", work_root, name="../escape.py")
    assert list(work_root.iterdir()) == []


def test_last_lines_are_printable_and_short() -> None:
    noisy = b"\x1b[31mred\x1b[0m\r\n" + b"tab\there\n" * 3 + b"\xff end\n"

    assert last_lines(noisy, lines=3) == "tab here\ntab here\n\ufffd end"
    assert len(last_lines(b"y" * 10_000)) == 1500


# ---------------------------------------------- the Lambda's own process is protected


def _python_for(user: str) -> str | None:
    """A Python interpreter *user* may execute (the test venv may live under /root)."""
    for candidate in (sys.executable, "/usr/bin/python3"):
        try:
            subprocess.run(
                [candidate, "-I", "-c", "pass"], user=user, capture_output=True, check=True, cwd="/"
            )
        except (OSError, subprocess.CalledProcessError):
            continue
        return candidate
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the probe as an unprivileged user")
def test_a_script_cannot_read_the_lambdas_credentials_from_proc() -> None:
    """As the same (non-root) user, a child can read its parent's /proc/<pid>/environ - where the
    Lambda's AWS credentials are - unless the parent is non-dumpable. Checked as user nobody."""
    python = _python_for("nobody")
    if python is None:
        pytest.skip("no Python interpreter the user nobody may run")
    folder = Path(tempfile.mkdtemp(prefix="lettershop-probe-"))  # pytest's tmp_path is root-only
    try:
        _check_proc_environ_protection(python, folder)
    finally:
        shutil.rmtree(folder)


def _copy_runner(folder: Path) -> None:
    """The runner and its process guard, as the package ``adapters`` of their own, for another Python."""
    (folder / "adapters").mkdir()
    (folder / "adapters" / "__init__.py").write_text("")
    for name in ("script_runner.py", "process_guard.py"):
        shutil.copy(SRC / "adapters" / name, folder / "adapters" / name)


def _check_proc_environ_protection(python: str, folder: Path) -> None:
    _copy_runner(folder)
    (folder / "probe.py").write_text(
        textwrap.dedent(
            """
            import os, subprocess, sys
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            from adapters.process_guard import protect_from_children
            if sys.argv[1] == "protect":
                protect_from_children()
            read = f"import sys; sys.stdout.buffer.write(open('/proc/{os.getpid()}/environ', 'rb').read())"
            child = subprocess.run([sys.executable, "-I", "-c", read], capture_output=True, env={})
            own = open("/proc/self/status").read().startswith("Name:")  # the process still reads its own
            print(child.returncode, b"AWS_SECRET_ACCESS_KEY=s3cr3t" in child.stdout, own)
            """
        )
    )
    for path in (folder, *folder.iterdir(), *(folder / "adapters").iterdir()):
        path.chmod(0o755)

    def probe(mode: str) -> str:
        done = subprocess.run(
            [python, "-I", str(folder / "probe.py"), mode],
            user="nobody",
            capture_output=True,
            check=True,
            cwd="/",
            env={"PATH": "/usr/bin:/bin", "AWS_SECRET_ACCESS_KEY": "s3cr3t"},
        )
        return done.stdout.decode().strip()

    assert probe("plain") == "0 True True"  # the danger is real
    assert probe("protect") == "1 False True"  # and protect_from_children() closes it


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the probe as an unprivileged user")
def test_a_script_of_an_unprivileged_function_cannot_write_its_code() -> None:
    """In Lambda the function runs as a user that does not own its code (and the code is read-only).
    Played here by the user nobody running the real runner: a script cannot write into src/ (owned by
    root), but can write the function's script cache and /tmp, where what it leaves stays."""
    python = _python_for("nobody")
    if python is None:
        pytest.skip("no Python interpreter the user nobody may run")
    if SRC.stat().st_uid != 0 or SRC.stat().st_mode & 0o002:
        pytest.skip("src/ is not a folder only root may write here")
    folder = Path(tempfile.mkdtemp(prefix="lettershop-probe-"))  # pytest's tmp_path is root-only
    try:
        _copy_runner(folder)
        (folder / "probe.py").write_text(WRITE_PROBE)
        for path in (folder, *folder.iterdir(), *(folder / "adapters").iterdir()):
            path.chmod(0o755)
        done = subprocess.run(
            [python, "-I", str(folder / "probe.py"), str(SRC)],
            user="nobody",
            capture_output=True,
            check=True,
            cwd="/",
            env={"PATH": "/usr/bin:/bin"},
        )
    finally:
        shutil.rmtree(folder)
        (SRC / "written-by-a-script.txt").unlink(missing_ok=True)
    report = json.loads(done.stdout)

    assert report == {
        "src": "PermissionError",  # the function's code
        "cache": "written",  # the function's script cache (detected at the next use: see below)
        "tmp": "written",
        "left_in_tmp": True,  # what it writes outside its working folder stays
        "ok": True,
    }


# The function's side, as the user nobody: a script cache of its own, then one run of a script that
# tries to write into the code, the cache and /tmp. Removes what it made.
WRITE_PROBE = r'''
import json, os, pathlib, shutil, sys, tempfile
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from adapters import script_runner
if sys.version_info < (3, 12):  # no rmtree(onexc=) in the system's Python; the folder holds no traps
    script_runner.remove_tree = lambda path: (shutil.rmtree(path), not path.exists())[1]
src = pathlib.Path(sys.argv[1])
cache = pathlib.Path(tempfile.mkdtemp(prefix="lettershop-scripts-"))
(cache / "cached.py").write_text("print('the cached script')")
left = pathlib.Path(tempfile.gettempdir()) / f"left-behind-{os.getpid()}.txt"
targets = {"src": src / "written-by-a-script.txt", "cache": cache / "cached.py", "tmp": left}
body = f"""
import json, os, pathlib
def attempt(path):
    try:
        pathlib.Path(path).write_text("written by a script")
    except OSError as error:
        return type(error).__name__
    return "written"
report = {{name: attempt(path) for name, path in {({k: str(v) for k, v in targets.items()})!r}.items()}}
open(os.environ["LETTERSHOP_FILE"], "w").write(json.dumps(report))
"""
try:
    run = script_runner.run_script(
        "scribble.py", body.encode(), b"x", file_name="export.csv", env=script_runner.script_environment({}),
        timeout_seconds=30, limits=script_runner.Limits(),
    )
    report = json.loads(run.file or b"{}")
    report |= {"ok": run.ok, "left_in_tmp": left.exists()}
finally:
    shutil.rmtree(cache)
    left.unlink(missing_ok=True)
print(json.dumps(report))
'''


# ---------------------------------------------- S3ScriptRunner with a recording S3 fake


class FakeS3:
    """``get_object`` on a dict of scripts, with ETags and ``If-None-Match``; records every call."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.calls: list[dict[str, str]] = []
        self.fail_with: str | None = None

    def put(self, key: str, body: str) -> None:
        self.objects[key] = textwrap.dedent(body).encode()

    def etag(self, key: str) -> str:
        return f'"{hash(self.objects[key]) & 0xFFFFFFFF:x}"'

    def get_object(self, **request: str) -> dict[str, Any]:
        self.calls.append(request)
        key = request["Key"]
        if self.fail_with:
            raise _client_error(self.fail_with, 503)
        if key not in self.objects:
            raise _client_error("NoSuchKey", 404)
        if request.get("IfNoneMatch") == self.etag(key):
            raise _client_error("304", 304)
        body = self.objects[key]
        return {"Body": io.BytesIO(body), "ETag": self.etag(key), "ContentLength": len(body)}


def _client_error(code: str, status: int) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "GetObject")


def call(
    stage: str = "pre", name: str = "fix.py", *, standard: bool = True, filename: str = "orders.csv"
) -> ScriptCall:
    return ScriptCall(
        stage=stage,  # type: ignore[arg-type]
        name=name,
        use_standard_script=standard,
        partner_id="acme",
        channel_id="acme-orders",
        filename=filename,
        sender="orders@partner.example",
        subject="LetterShop import",
        timeout_seconds=5,
    )


@pytest.fixture
def s3() -> FakeS3:
    return FakeS3()


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[ScriptCache]:
    cache = ScriptCache(tmp_path)
    yield cache
    cache.clear()


@pytest.fixture
def runner(
    s3: FakeS3, cache: ScriptCache, work_root: Path, monkeypatch: pytest.MonkeyPatch
) -> S3ScriptRunner:
    # As in a process without the Lambda's variables: the metric must not depend on them.
    monkeypatch.delenv("POWERTOOLS_METRICS_NAMESPACE", raising=False)
    return S3ScriptRunner("scripts-bucket", s3, cache=cache, work_root=work_root)


UPPER = """
import os, pathlib
path = pathlib.Path(os.environ["LETTERSHOP_FILE"])
path.write_bytes(path.read_bytes().upper())
"""


def test_script_key_by_standard_flag_and_partner() -> None:
    assert script_key("fix.py", use_standard_script=True, partner_id="acme") == "standard/fix.py"
    assert script_key("fix.py", use_standard_script=False, partner_id="acme") == "partners/acme/fix.py"
    for name, partner in (("../fix.py", "acme"), ("fix.sh", "acme"), ("fix.py", ".."), ("fix.py", "a/b")):
        with pytest.raises(ScriptFailed):
            script_key(name, use_standard_script=False, partner_id=partner)


def test_second_run_is_a_conditional_get_answered_from_the_cache(runner: S3ScriptRunner, s3: FakeS3) -> None:
    s3.put("standard/fix.py", UPPER)

    assert runner.run(call(), b"a;b\n") == b"A;B\n"
    assert runner.run(call(), b"c;d\n") == b"C;D\n"

    assert [c.get("IfNoneMatch") for c in s3.calls] == [None, s3.etag("standard/fix.py")]


def test_a_changed_script_is_downloaded_again(runner: S3ScriptRunner, s3: FakeS3) -> None:
    s3.put("standard/fix.py", UPPER)
    runner.run(call(), b"a\n")
    s3.put("standard/fix.py", "import os; open(os.environ['LETTERSHOP_FILE'], 'w').write('changed')")

    assert runner.run(call(), b"a\n") == b"changed"


def test_a_cached_copy_changed_on_disk_is_not_trusted(
    runner: S3ScriptRunner, s3: FakeS3, cache: ScriptCache
) -> None:
    s3.put("standard/fix.py", UPPER)
    runner.run(call(), b"a\n")
    assert cache.directory is not None
    [cached] = cache.directory.glob("*.py")
    cached.write_text("import sys; sys.exit(9)")  # what another script (same user) could do

    assert runner.run(call(), b"a\n") == b"A\n"
    assert "IfNoneMatch" not in s3.calls[-1]


def test_missing_script_is_a_script_failure_naming_it_and_counted(
    runner: S3ScriptRunner, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(
        ScriptFailed, match=r"postscript failed: the script 'stamp.py' of partner 'acme' does not exist"
    ):
        runner.run(call("post", "stamp.py", standard=False), b"x\n")

    [metric] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert metric["ScriptFailed"] == [1.0]
    assert (metric["channel_id"], metric["stage"]) == ("acme-orders", "post")
    assert metric["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "LetterShop"
    [dimensions] = metric["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    assert {"channel_id", "stage"} <= set(dimensions)


def test_throttling_is_transient(runner: S3ScriptRunner, s3: FakeS3) -> None:
    s3.fail_with = "SlowDown"

    with pytest.raises(TransientError):
        runner.run(call(), b"x\n")


def test_failure_message_names_the_script_and_quotes_stderr(runner: S3ScriptRunner, s3: FakeS3) -> None:
    s3.put("standard/fix.py", "import sys; print('column Grams is missing', file=sys.stderr); sys.exit(3)")

    with pytest.raises(ScriptFailed) as failed:
        runner.run(call(), b"x\n")

    assert str(failed.value) == (
        "prescript failed: the standard script 'fix.py' exited with code 3; "
        "the end of its error output:\n    column Grams is missing"
    )


def test_attachment_names_are_not_used_as_paths(runner: S3ScriptRunner, s3: FakeS3) -> None:
    s3.put(
        "standard/fix.py",
        """
        import os
        p = os.environ["LETTERSHOP_FILE"]
        open(p, "w").write(os.path.basename(p) + "|" + os.environ["LETTERSHOP_FILENAME"])
        """,
    )

    result = runner.run(call(filename="../../etc/evil name.TXT"), b"x\n")

    assert result == b"import.txt|../../etc/evil name.TXT"


def test_a_huge_subject_is_cut_so_the_script_still_starts(runner: S3ScriptRunner, s3: FakeS3) -> None:
    # 128 KiB in one environment string makes execve fail with E2BIG on Linux
    s3.put(
        "standard/fix.py",
        "import os, pathlib\n"
        "names = ('LETTERSHOP_SUBJECT', 'LETTERSHOP_FILENAME', 'LETTERSHOP_SENDER')\n"
        "values = [os.environ[n] for n in names]\n"
        "pathlib.Path(os.environ['LETTERSHOP_FILE']).write_text(' '.join(str(len(v)) for v in values))\n",
    )
    huge = replace(call(), subject="S" * 128 * 1024, filename="f\x00" * 70_000 + ".csv", sender="a" * 5000)

    assert (
        runner.run(huge, b"a;b\n")
        == f"{MAX_VARIABLE_CHARS} {MAX_VARIABLE_CHARS} {MAX_VARIABLE_CHARS}".encode()
    )
