"""Pre- and postscripts end to end (DESIGN §4): stored in moto's S3, run for real through the handler."""

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from app.root import WARM, aws_client
from devstack import aws
from devstack.invoke import ROOT, invoke_poll, load_event, store_channel
from devstack.samples import VALID_IMPORT, partner_mail
from devstack.stack import LocalStack
from tests.integration.conftest import JsonLogs

PARTNER = "orders@partner.example"
EVENT = load_event("poll-channel.json", channel_id="acme")

# Replaces the first reference in the file (import or export) with a mark saying who ran.
MARK = """
import os, pathlib
path = pathlib.Path(os.environ["LETTERSHOP_FILE"])
path.write_bytes(path.read_bytes().replace(b"R-1001", b"{who}-1001"))
"""
PASS_THROUGH = "print('nothing to change')"


@pytest.fixture(autouse=True)
def cold_script_cache() -> Iterator[None]:
    """Each test starts as a new Lambda environment: no script cached in memory or in /tmp."""
    WARM.scripts.clear()
    yield
    WARM.scripts.clear()


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The handler's /tmp for this test only (other runs on this machine use the real /tmp)."""
    root = tmp_path / "lambda-tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


class GetObjectLog:
    """Every GetObject the handler's own S3 client makes: ``(key, HTTP status)``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        aws_client("s3").meta.events.register("after-call.s3.GetObject", self._record)

    def _record(self, http_response: Any, **_: Any) -> None:
        key = http_response.url.split("/", 4)[-1].split("?")[0]
        self.calls.append((key, http_response.status_code))

    def take(self) -> list[tuple[str, int]]:
        calls, self.calls = self.calls, []
        return calls


def put_script(stack: LocalStack, key: str, body: str) -> None:
    aws.put_object(stack.endpoint_url, stack.names.scripts_bucket, key, textwrap.dedent(body))


def parse(raw: bytes) -> EmailMessage:
    return message_from_bytes(raw, policy=policy.default)


def counts(result: dict[str, Any]) -> tuple[int, ...]:
    keys = ("seen", "recognized", "processed", "failed", "rejected", "deferred", "deleted")
    return tuple(result[key] for key in keys)


def poll(
    stack: LocalStack, mailbox: tuple[str, str], raw: bytes | None = None
) -> tuple[dict[str, Any], EmailMessage]:
    """Deliver one partner message, poll once, return the result and the one reply."""
    stack.smtp.clear()
    stack.dovecot.deliver(mailbox[0], raw or partner_mail(sender=PARTNER))
    result = invoke_poll(EVENT)
    [mail] = stack.smtp.wait_for(1)
    return result, parse(mail.data)


def body_of(reply: EmailMessage) -> str:
    body = reply.get_body(("plain",))
    assert body is not None
    return str(body.get_content()).replace("\r\n", "\n")


def attachments(reply: EmailMessage) -> dict[str, str]:
    return {
        str(part.get_filename()): part.get_payload(decode=True).decode("utf-8")  # type: ignore[union-attr]
        for part in reply.iter_attachments()
    }


def first_reference(reply: EmailMessage) -> str:
    export = attachments(reply)["orders_export.csv"]
    return export.splitlines()[1].split(";")[0]


def processes_with(marker: str) -> list[int]:
    """Pids whose command line mentions *marker* (scan of /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def alive(pid: int) -> bool:
    """Whether *pid* is a live process (not gone, not a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def work_folders(root: Path) -> list[Path]:
    """The scripts' working folders under *root*."""
    return sorted(root.glob("lettershop-script-*"))


# --------------------------------------------------------------- resolution


@pytest.mark.parametrize("stage", ["prescript", "postscript"])
@pytest.mark.parametrize("use_standard_script", [True, False], ids=["standard", "partner"])
def test_the_standard_flag_picks_the_standard_or_the_partners_script(
    stack: LocalStack, mailbox: tuple[str, str], stage: str, use_standard_script: bool
) -> None:
    put_script(stack, "standard/mark.py", MARK.format(who="STD"))
    put_script(stack, "partners/acme-partner/mark.py", MARK.format(who="PTN"))
    put_script(
        stack, "partners/acme/mark.py", MARK.format(who="CHANNEL")
    )  # partner_id wins over the channel id
    store_channel(
        stack,
        mailbox,
        partner_id="acme-partner",
        use_standard_script=use_standard_script,
        **{stage: "mark.py"},
    )

    result, reply = poll(stack, mailbox)

    assert counts(result) == (1, 1, 1, 0, 0, 0, 1)
    assert first_reference(reply) == ("STD-1001" if use_standard_script else "PTN-1001")


def test_prescript_and_postscript_both_run_in_order_and_are_logged(
    stack: LocalStack, mailbox: tuple[str, str], json_logs: JsonLogs
) -> None:
    put_script(stack, "standard/pre.py", MARK.format(who="PRE") + "print('marked R-1001')")
    put_script(
        stack,
        "standard/post.py",
        """
        import os, pathlib
        path = pathlib.Path(os.environ["LETTERSHOP_FILE"])
        path.write_bytes(path.read_bytes().replace(b"PRE-1001", b"PRE-POST-1001"))
        """,
    )
    store_channel(stack, mailbox, prescript="pre.py", postscript="post.py")

    _, reply = poll(stack, mailbox)

    assert first_reference(reply) == "PRE-POST-1001"
    ran = [line for line in json_logs.lines() if line["message"] in ("prescript ran", "postscript ran")]
    assert [line["message"] for line in ran] == ["prescript ran", "postscript ran"]
    pre = ran[0]
    assert pre["level"] == "INFO"
    assert (pre["stage"], pre["script"], pre["source"]) == ("pre", "pre.py", "download")
    assert (pre["bucket"], pre["key"]) == (stack.names.scripts_bucket, "standard/pre.py")
    assert (pre["exit_code"], pre["stdout_tail"]) == (0, "marked R-1001")
    assert isinstance(pre["duration_ms"], int)
    assert 0 < pre["duration_ms"] < 30_000
    assert pre["etag"].startswith('"')
    assert (pre["timed_out"], pre["workdir_removed"], pre["swept_processes"]) == (False, True, 0)
    assert ran[1]["key"] == "standard/post.py"


def test_missing_script_fails_the_message_with_a_reply_naming_it(
    stack: LocalStack, mailbox: tuple[str, str], json_logs: JsonLogs, capsys: pytest.CaptureFixture[str]
) -> None:
    store_channel(stack, mailbox, use_standard_script=False, prescript="tsv_to_canonical.py")

    result, reply = poll(stack, mailbox)

    assert counts(result) == (1, 1, 0, 1, 0, 0, 1)
    assert "the script 'tsv_to_canonical.py' of partner 'acme' does not exist" in body_of(reply)
    assert attachments(reply) == {}
    [line] = [line for line in json_logs.lines() if line["message"] == "configured script does not exist"]
    assert (line["bucket"], line["key"]) == (stack.names.scripts_bucket, "partners/acme/tsv_to_canonical.py")
    [metric] = [json.loads(out) for out in capsys.readouterr().out.splitlines() if '"ScriptFailed"' in out]
    assert (metric["ScriptFailed"], metric["channel_id"], metric["stage"]) == ([1.0], "acme", "pre")
    assert stack.dovecot.mailbox(mailbox[0]) == []


def test_a_failing_postscript_fails_its_file_and_is_counted_with_stage_post(
    stack: LocalStack,
    mailbox: tuple[str, str],
    json_logs: JsonLogs,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Without the variable the metric must still be written (and the failure not become "unexpected").
    monkeypatch.delenv("POWERTOOLS_METRICS_NAMESPACE")
    put_script(stack, "standard/post.py", "import sys; sys.exit('no room for the stamp')")
    store_channel(stack, mailbox, postscript="post.py")
    capsys.readouterr()

    result, reply = poll(stack, mailbox)

    assert counts(result) == (1, 1, 0, 1, 0, 0, 1)
    assert (
        "orders.csv: not processed: postscript failed: the standard script 'post.py' exited with code 1; "
        "the end of its error output:\n    no room for the stamp"
    ) in body_of(reply)
    [failed] = [line for line in json_logs.lines() if line["message"].startswith("postscript failed")]
    assert (failed["level"], failed["stage"], failed["exit_code"]) == ("WARNING", "post", 1)
    assert failed["stderr_tail"] == "no room for the stamp"
    [metric] = [json.loads(out) for out in capsys.readouterr().out.splitlines() if '"ScriptFailed"' in out]
    assert (metric["ScriptFailed"], metric["channel_id"], metric["stage"]) == ([1.0], "acme", "post")
    assert metric["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "LetterShop"


@pytest.mark.parametrize("name", ["../standard/x.py", "sub/x.py", "x.sh", ".hidden.py", "x\\y.py"], ids=repr)
def test_a_script_name_that_is_not_a_plain_py_file_is_an_invalid_configuration(
    stack: LocalStack, mailbox: tuple[str, str], name: str
) -> None:
    store_channel(stack, mailbox, postscript=name)
    raw = partner_mail()
    stack.dovecot.deliver(mailbox[0], raw)

    result = invoke_poll(EVENT)

    assert result["status"] == "invalid_config"
    assert result["error"].startswith("channel acme is not valid: postscript: ")
    assert f"'{name}' is not a script name" in result["error"]
    assert stack.dovecot.mailbox(mailbox[0]) == [raw]


# --------------------------------------------------------------- the cache


def test_an_unchanged_script_is_not_downloaded_again_and_a_changed_one_is(
    stack: LocalStack, mailbox: tuple[str, str]
) -> None:
    gets = GetObjectLog()
    put_script(stack, "standard/mark.py", MARK.format(who="V1"))
    store_channel(stack, mailbox, prescript="mark.py")

    _, first = poll(stack, mailbox)
    assert gets.take() == [("standard/mark.py", 200)]
    assert first_reference(first) == "V1-1001"

    _, second = poll(stack, mailbox)  # a warm Lambda: one conditional request, no body
    assert gets.take() == [("standard/mark.py", 304)]
    assert first_reference(second) == "V1-1001"

    put_script(stack, "standard/mark.py", MARK.format(who="V2"))  # a new ETag
    _, third = poll(stack, mailbox)
    assert gets.take() == [("standard/mark.py", 200)]
    assert first_reference(third) == "V2-1001"

    put_script(stack, "standard/renamed.py", MARK.format(who="RENAMED"))
    store_channel(stack, mailbox, prescript="renamed.py")
    _, fourth = poll(stack, mailbox)
    assert gets.take() == [("standard/renamed.py", 200)]
    assert first_reference(fourth) == "RENAMED-1001"
    assert WARM.scripts.directory is not None
    assert len(list(WARM.scripts.directory.glob("*.py"))) == 2  # one file per script, the newest ETag


def test_a_script_that_overwrites_the_cache_does_not_change_what_runs_next(
    stack: LocalStack, mailbox: tuple[str, str]
) -> None:
    gets = GetObjectLog()
    put_script(stack, "standard/mark.py", MARK.format(who="GOOD"))
    put_script(stack, "standard/vandal.py", PASS_THROUGH)
    store_channel(stack, mailbox, prescript="mark.py", postscript="vandal.py")
    poll(stack, mailbox)
    assert WARM.scripts.directory is not None
    # Scripts run as the Lambda's user, so they can write into its cache: this one overwrites it.
    vandal = f"""
        import pathlib
        for cached in pathlib.Path({str(WARM.scripts.directory)!r}).glob("*.py"):
            cached.write_text("import sys; sys.exit(9)")
        """
    put_script(stack, "standard/vandal.py", vandal)
    poll(stack, mailbox)  # runs the good script from the cache, then the vandal
    gets.take()

    result, reply = poll(stack, mailbox)

    assert counts(result) == (1, 1, 1, 0, 0, 0, 1)
    assert first_reference(reply) == "GOOD-1001"
    assert sorted(gets.take()) == [("standard/mark.py", 200), ("standard/vandal.py", 200)]  # fetched afresh


# --------------------------------------------------------------- the sandbox


def test_the_script_sees_no_credentials_no_resource_names_and_no_open_files(
    stack: LocalStack, mailbox: tuple[str, str], private_tmp: Path
) -> None:
    put_script(
        stack,
        "standard/inspect.py",
        """
        import json, os
        report = {
            "env": dict(os.environ),
            "cwd": os.getcwd(),
            "listing": sorted(os.listdir(".")),
            "fds": sorted(os.listdir("/proc/self/fd")),
        }
        open("leftover.txt", "w").write("written in the working folder")
        with open(os.environ["LETTERSHOP_FILE"], "w") as out:
            json.dump(report, out)
        """,
    )
    store_channel(stack, mailbox, postscript="inspect.py")

    _, reply = poll(stack, mailbox)

    report = json.loads(attachments(reply)["orders_export.csv"])
    env = report["env"]
    assert set(env) == {
        "PATH",
        "LANG",
        "LETTERSHOP_STAGE",
        "LETTERSHOP_FILE",
        "LETTERSHOP_FILENAME",
        "LETTERSHOP_CHANNEL_ID",
        "LETTERSHOP_PARTNER_ID",
        "LETTERSHOP_SENDER",
        "LETTERSHOP_SUBJECT",
    }
    assert (env["LETTERSHOP_STAGE"], env["LETTERSHOP_FILENAME"]) == ("post", "orders_export.csv")
    assert (env["LETTERSHOP_CHANNEL_ID"], env["LETTERSHOP_PARTNER_ID"]) == ("acme", "acme")
    assert (env["LETTERSHOP_SENDER"], env["LETTERSHOP_SUBJECT"]) == (PARTNER, "LetterShop import")
    everything = json.dumps(env)
    names = stack.names
    for secret in (aws.ACCESS_KEY, stack.endpoint_url, names.channels_table, names.state_table):
        assert secret not in everything
    assert names.scripts_bucket not in everything
    assert names.archive_bucket not in everything
    assert env["LETTERSHOP_FILE"] == str(Path(report["cwd"]) / "export.csv")
    assert report["listing"] == ["export.csv", "inspect.py"]
    assert len(report["fds"]) == 4  # 0, 1, 2 and the listing: no socket or spool file of the Lambda
    assert Path(report["cwd"]).parent == private_tmp
    assert not Path(report["cwd"]).exists()  # removed with what the script wrote there
    assert work_folders(private_tmp) == []


SRC = ROOT / "src"  # the function's code: /var/task in Lambda


def test_a_script_writes_outside_its_folder_exactly_where_the_functions_user_may(
    stack: LocalStack, mailbox: tuple[str, str], private_tmp: Path
) -> None:
    """The sandbox does not restrict writing outside the working folder (docs/scripts.md, "What the
    sandbox does not prevent"): file permissions decide. In Lambda the code is read-only; here, run
    as root (or by the checkout's owner), src/ is writable - as the user nobody it is not
    (``test_script_runner.test_a_script_of_an_unprivileged_function_cannot_write_its_code``)."""
    in_src = SRC / f"written-by-a-script-{uuid.uuid4().hex}.txt"
    put_script(stack, "standard/mark.py", MARK.format(who="GOOD"))
    put_script(
        stack,
        "standard/scribble.py",
        f"""
        import json, os, pathlib
        tmp = pathlib.Path.cwd().parent  # the function's /tmp
        def attempt(path, remove=False):
            try:
                path.write_text("written by a script")
            except OSError as error:
                return type(error).__name__
            if remove:
                path.unlink()
            return "written"
        report = {{
            "src": attempt(pathlib.Path({str(in_src)!r}), remove=True),
            "cache": [attempt(cached) for cached in tmp.glob("lettershop-scripts-*/*.py")],
            "tmp": attempt(tmp / "left-behind.txt"),
        }}
        with open(os.environ["LETTERSHOP_FILE"], "w") as out:
            json.dump(report, out)
        """,
    )
    store_channel(stack, mailbox, prescript="mark.py", postscript="scribble.py")
    gets = GetObjectLog()
    try:
        _, reply = poll(stack, mailbox)
    finally:
        in_src.unlink(missing_ok=True)

    report = json.loads(attachments(reply)["orders_export.csv"])
    assert report["src"] == ("written" if os.access(SRC, os.W_OK) else "PermissionError")
    assert report["cache"] == ["written", "written"]  # both scripts' cached copies were overwritten
    assert report["tmp"] == "written"
    assert (private_tmp / "left-behind.txt").read_text() == "written by a script"  # not removed
    assert work_folders(private_tmp) == []  # only the working folder is
    gets.take()
    # The overwritten cache is detected: both scripts are downloaded again, the good one still runs.
    store_channel(stack, mailbox, prescript="mark.py")
    _, reply = poll(stack, mailbox)
    assert gets.take() == [("standard/mark.py", 200)]
    assert first_reference(reply) == "GOOD-1001"


TIMED_OUT = "did not finish within 1 s and was stopped"  # the cases that sleep get 1 s, the others 30 s
RUNAWAYS = {
    "sleeps past its timeout": ("import time; time.sleep(60)", TIMED_OUT),
    "forks sleeping children": (
        """
        import os, time
        for _ in range(5):
            if os.fork() == 0:
                time.sleep(120)
                os._exit(0)
        time.sleep(120)
        """,
        TIMED_OUT,
    ),
    "setsid + double fork": (  # the daemon leaves the group and session: the sweep must get it
        """
        import os, sys, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(120)
            os._exit(0)
        time.sleep(0.5)
        sys.exit("left a daemon behind")
        """,
        "exited with code 1; the end of its error output:\n    left a daemon behind",
    ),
    "allocates without end": (
        """
        blocks = []
        while True:
            blocks.append(bytearray(16 * 1024 * 1024))
        """,
        "exited with code 1 (out of memory: the limit is 256 MiB)",
    ),
    "prints 100 MB and fails": (
        """
        import sys
        block = b"spam " * 200_000 + b"\\n"
        for _ in range(100):
            sys.stdout.buffer.write(block)
        sys.exit("gave up after 100 MB of output")
        """,
        "exited with code 1; the end of its error output:\n    gave up after 100 MB of output",
    ),
    "exits 3": (
        "import sys; print('column Grams is missing', file=sys.stderr); sys.exit(3)",
        "exited with code 3; the end of its error output:\n    column Grams is missing",
    ),
    "deletes its file": ("import os; os.remove(os.environ['LETTERSHOP_FILE'])", "deleted its file"),
}


@pytest.mark.parametrize("case", list(RUNAWAYS))
def test_a_runaway_script_fails_its_file_and_leaves_nothing_behind(
    stack: LocalStack, mailbox: tuple[str, str], private_tmp: Path, case: str
) -> None:
    body, reason = RUNAWAYS[case]
    name = f"runaway_{uuid.uuid4().hex}.py"  # a marker in the command line of the script and its children
    put_script(stack, f"standard/{name}", body)
    store_channel(stack, mailbox, prescript=name, script_timeout_seconds=1 if reason == TIMED_OUT else 30)

    result, reply = poll(stack, mailbox)

    assert result["status"] == "ok"
    assert counts(result) == (1, 1, 0, 1, 0, 0, 1)
    assert f"orders.csv: not processed: prescript failed: the standard script '{name}' {reason}" in body_of(
        reply
    )
    assert processes_with(name) == []
    assert work_folders(private_tmp) == []


# ru_maxrss is the peak of a process's whole life: measured in a fresh process, after a first poll
# (imports, clients, TLS), so only what the second poll - the runaway script's - adds can show.
MEASURE_POLL = """
import json, resource
from devstack.invoke import invoke_poll
invoke_poll({"channel_id": "warm"})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = invoke_poll({"channel_id": "acme"})
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"result": result, "grown_kib": grown}))
"""


@pytest.mark.parametrize("case", ["allocates without end", "prints 100 MB and fails"])
def test_the_functions_own_memory_stays_small_whatever_the_script_does(
    stack: LocalStack, mailbox: tuple[str, str], tmp_path: Path, case: str
) -> None:
    put_script(stack, "standard/runaway.py", RUNAWAYS[case][0])
    put_script(stack, "standard/pass.py", PASS_THROUGH)
    store_channel(stack, mailbox, prescript="runaway.py", script_timeout_seconds=30)
    warm = stack.new_mailbox()
    store_channel(stack, warm, channel_id="warm", prescript="pass.py")
    for user in (mailbox[0], warm[0]):
        stack.dovecot.deliver(user, partner_mail(sender=PARTNER))

    done = subprocess.run(
        [sys.executable, "-c", MEASURE_POLL],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # its script cache and working folders go there
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    measured = json.loads(done.stdout.splitlines()[-1])
    assert counts(measured["result"]) == (1, 1, 0, 1, 0, 0, 1)
    assert measured["grown_kib"] < 50 * 1024  # the script's memory and output are not the function's


DAEMON = """
import os, pathlib, time
pidfile = pathlib.Path.cwd().parent / "daemon.pid"  # the function's /tmp, outside the working folder
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        pidfile.write_text(str(os.getpid()))
        time.sleep(120)
    os._exit(0)
while not pidfile.exists():
    time.sleep(0.01)
print("left a daemon running")
"""


def test_a_daemon_left_by_a_successful_script_is_killed_and_the_stack_keeps_working(
    stack: LocalStack, mailbox: tuple[str, str], private_tmp: Path, json_logs: JsonLogs
) -> None:
    name = f"daemon_{uuid.uuid4().hex}.py"
    put_script(stack, f"standard/{name}", DAEMON)
    store_channel(stack, mailbox, prescript=name)

    result, _ = poll(stack, mailbox)

    assert counts(result) == (1, 1, 1, 0, 0, 0, 1)  # the script itself succeeded
    daemon = int((private_tmp / "daemon.pid").read_text())
    assert not alive(daemon)
    assert processes_with(name) == []
    [ran] = [line for line in json_logs.lines() if line["message"] == "prescript ran"]
    assert ran["swept_processes"] >= 2  # the daemon and its parent (a zombie by then)
    # Dovecot and moto are children of this (pytest) process too: the sweep left them alone.
    assert stack.dovecot.running
    assert stack.moto.running
    (private_tmp / "daemon.pid").unlink()
    result, reply = poll(stack, mailbox)
    assert counts(result) == (1, 1, 1, 0, 0, 0, 1)
    assert first_reference(reply) == "R-1001"


def test_one_failing_file_does_not_stop_the_others(stack: LocalStack, mailbox: tuple[str, str]) -> None:
    put_script(
        stack,
        "standard/picky.py",
        """
        import os, sys
        if os.environ["LETTERSHOP_FILENAME"] == "broken.csv":
            sys.exit("this file is not for me")
        """,
    )
    store_channel(stack, mailbox, prescript="picky.py")
    raw = partner_mail(
        sender=PARTNER, attachments=[("broken.csv", VALID_IMPORT), ("orders.csv", VALID_IMPORT)]
    )

    result, reply = poll(stack, mailbox, raw)

    assert counts(result) == (1, 1, 1, 0, 0, 0, 1)
    assert list(attachments(reply)) == ["orders_export.csv"]
    assert "broken.csv: not processed: prescript failed" in body_of(reply)
    assert "this file is not for me" in body_of(reply)


@pytest.mark.parametrize(
    ("use_standard_script", "stamp"),
    [(True, ";acme;LetterShop import"), (False, ";https://shop.alpina.example/tracking/")],
    ids=["standard", "partner alpina"],
)
def test_the_example_scripts_convert_a_partner_tsv_and_stamp_the_export(
    stack: LocalStack, mailbox: tuple[str, str], use_standard_script: bool, stamp: str
) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples" / "scripts"
    for path in examples.rglob("*.py"):
        aws.put_object(
            stack.endpoint_url,
            stack.names.scripts_bucket,
            path.relative_to(examples).as_posix(),
            path.read_bytes(),
        )
    store_channel(
        stack,
        mailbox,
        partner_id="acme" if use_standard_script else "alpina",
        use_standard_script=use_standard_script,
        import_file_patterns=["*.tsv"],
        prescript="tsv_to_canonical.py",
        postscript="stamp_export.py",
    )
    tsv = (
        "Ref\tRecipient\tStreet\tNo\tZIP\tTown\tGrams\r\n"
        "T-1\tAnna Muster\tBahnhofstrasse\t12\t8001\tZürich\t80\r\n"
    )
    raw = partner_mail(sender=PARTNER, attachments=[("week48.tsv", tsv.encode())])

    result, reply = poll(stack, mailbox, raw)

    assert counts(result) == (1, 1, 1, 0, 0, 0, 1)
    header, row = attachments(reply)["week48_export.csv"].splitlines()
    assert header.endswith(";partner;order_subject" if use_standard_script else ";tracking_url")
    assert row.startswith("T-1;ACCEPTED;LB")
    shipment_id = row.split(";")[2]
    assert row.endswith(stamp if use_standard_script else stamp + shipment_id)


def test_the_partner_copy_of_the_example_prescript_is_the_standard_one() -> None:
    examples = Path(__file__).resolve().parents[2] / "examples" / "scripts"
    standard = (examples / "standard" / "tsv_to_canonical.py").read_bytes()
    assert (examples / "partners" / "alpina" / "tsv_to_canonical.py").read_bytes() == standard
