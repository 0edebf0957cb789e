"""A real Dovecot POP3/POP3S server that lives entirely inside a temporary folder.

Everything Dovecot writes (sockets, state, log, mail) stays in that folder; the system's
/etc/dovecot and /var/run/dovecot are never touched, so several instances can run side by side
next to (or without) the Debian service. See DESIGN §9 for why each setting is there.
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import itertools
import os
import poplib
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from devstack.server import LocalServer
from devstack.tls import HOST, TlsFiles, die_with_parent, free_port, listening, make_tls_files

DOVECOT = "/usr/sbin/dovecot"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
STOP_GRACE = 3.0

_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")
_DELIVERY_NAME = re.compile(r"^(\d+)\.M(\d+)")


@dataclass(frozen=True)
class OAuth2Introspection:
    """Where a ``passdb oauth2`` instance checks tokens (RFC 7662, ``introspection_mode = post``)."""

    url: str
    client_id: str
    client_secret: str = field(repr=False)


class DovecotError(RuntimeError):
    """Dovecot did not start (or stop); the message carries its log."""


def _mail_ids() -> tuple[int, int]:
    return pwd.getpwnam("mail").pw_uid, grp.getgrnam("mail").gr_gid


_live: set[Dovecot] = set()  # strong refs: a forgotten server is still stopped at exit


@atexit.register
def _stop_leftovers() -> None:
    """Last line of defence: never leave a dovecot behind when the interpreter exits."""
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.stop()


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group *pgid*, from /proc."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ..." — comm may contain spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


class Dovecot(LocalServer):
    """``dovecot -F -c <conf>`` with POP3 (+STLS) and POP3S on free ports of 127.0.0.1.

    Users live in ``passwd-file`` files with ``{PLAIN}`` passwords, one file per user
    (``users/<name>``), so :meth:`add_user` works at once while the server runs: Dovecot stats a
    passwd-file at most once per second, so a user appended to one shared file could stay unknown
    for that second, but a file it has never looked at is read on first use. Mail is delivered
    straight into the user's Maildir (``tmp/`` then rename into ``new/``), as an MTA would.

    With ``oauth2``, the instance accepts only OAuth 2.0 tokens (``AUTH XOAUTH2`` / ``OAUTHBEARER``,
    ``passdb oauth2``), each checked by introspection at the authorization server; the passwd-file
    then serves as the userdb only.
    """

    host = HOST

    def __init__(
        self,
        parent_dir: str | os.PathLike[str] | None = None,
        tls: TlsFiles | None = None,
        *,
        oauth2: OAuth2Introspection | None = None,
    ) -> None:
        self._parent_dir = Path(parent_dir) if parent_dir is not None else None
        self._tls = tls
        self.oauth2 = oauth2
        self.root: Path | None = None
        self.pop3_port = 0
        self.pop3s_port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._users: dict[str, str] = {}
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self._last_stamp = (0, 0)
        self._tls_in_use: TlsFiles | None = None

    # ------------------------------------------------------------------ paths

    def _path(self, *parts: str) -> Path:
        if self.root is None:
            raise RuntimeError("Dovecot is not started")
        return self.root.joinpath(*parts)

    @property
    def base_dir(self) -> Path:
        return self._path("run")

    @property
    def log_path(self) -> Path:
        return self._path("dovecot.log")

    @property
    def users_dir(self) -> Path:
        return self._path("users")

    def passwd_path(self, user: str) -> Path:
        return self.users_dir / user

    @property
    def config_path(self) -> Path:
        return self._path("dovecot.conf")

    def home(self, user: str) -> Path:
        return self._path("mail", user)

    def maildir(self, user: str) -> Path:
        return self.home(user) / "Maildir"

    # -------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start Dovecot; return once both ports accept connections (or raise with its log)."""
        if self._proc is not None:
            raise RuntimeError("Dovecot already started")
        self.root = Path(tempfile.mkdtemp(prefix="dovecot-", dir=self._parent_dir))
        # Dovecot's unprivileged processes (auth as `dovecot`, mail as `mail`) must be able to
        # traverse the folder; mkdtemp makes it 0700.
        self.root.chmod(0o755)
        _live.add(self)
        try:
            self._prepare()
            last_error: DovecotError | None = None
            for _attempt in range(3):  # a free port can be taken between our check and dovecot's bind
                try:
                    self._launch()
                    return
                except DovecotError as err:
                    last_error = err
                    self._kill()
                    if "Address already in use" not in str(err):
                        break
            assert last_error is not None
            raise last_error
        except BaseException:
            self.stop()
            raise

    @property
    def tls(self) -> TlsFiles:
        """The certificate files in use (``ca_file`` is what clients must trust)."""
        if self._tls_in_use is None:
            raise RuntimeError("Dovecot is not started")
        return self._tls_in_use

    def _prepare(self) -> None:
        self._tls_in_use = self._tls or make_tls_files(self._path("tls"))
        for sub in ("run", "state", "mail", "users"):
            self._path(sub).mkdir()
            self._path(sub).chmod(0o755)

    def _launch(self) -> None:
        self.pop3_port = free_port()
        self.pop3s_port = free_port()
        while self.pop3s_port == self.pop3_port:
            self.pop3s_port = free_port()
        self.config_path.write_text(self._config(self.tls))
        if self.oauth2 is not None:
            self._path("dovecot-oauth2.conf.ext").write_text(self._oauth2_config(self.oauth2, self.tls))
        self.log_path.touch()
        with open(self._path("dovecot.stdout"), "ab") as out:
            self._proc = subprocess.Popen(
                [*die_with_parent(), DOVECOT, "-F", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() can clean up children too
                cwd=self.root,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise DovecotError(
                    f"dovecot exited with status {self._proc.returncode} during start\n{self.log_text()}"
                )
            # master.pid appears a moment after the listeners; stop() relies on it.
            if self._master_pid() is not None and listening(self.pop3_port) and listening(self.pop3s_port):
                return
            time.sleep(0.01)
        raise DovecotError(
            f"dovecot did not open ports {self.pop3_port}/{self.pop3s_port} "
            f"within {START_TIMEOUT:.0f} s\n{self.log_text()}"
        )

    def _config(self, tls: TlsFiles) -> str:
        root = self.root
        assert root is not None
        mail_uid, mail_gid = _mail_ids()
        dh = Path("/usr/share/dovecot/dh.pem")
        dh_line = f"ssl_dh = <{dh}\n" if dh.exists() else ""
        return f"""# generated by devstack/dovecot.py; lives and dies with {root}
instance_name = lettershop-{root.name}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
debug_log_path = {root}/dovecot.log
protocols = pop3
listen = {HOST}
shutdown_clients = yes

# Running as root: Dovecot's own processes and the mail processes must not be root.
default_internal_user = dovecot
default_login_user = dovenull
mail_uid = {mail_uid}
mail_gid = {mail_gid}
first_valid_uid = {mail_uid}
first_valid_gid = {mail_gid}
mail_location = maildir:~/Maildir

ssl = yes
ssl_cert = <{tls.cert_file}
ssl_key = <{tls.key_file}
{dh_line}disable_plaintext_auth = no
auth_mechanisms = {"plain xoauth2 oauthbearer" if self.oauth2 else "plain login"}
# A wrong password must fail fast and must not slow down later logins (anvil penalty off below).
# Failures are still answered by the auth process's 0.5 s failure-queue timer (not configurable).
auth_failure_delay = 0
auth_cache_size = 0

{self._passdb(root)}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users/%u
  default_fields = uid={mail_uid} gid={mail_gid} home={root}/mail/%u
}}

service anvil {{
  # The auth process cannot connect to this socket, so it disables the auth penalty.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = {HOST}
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    address = {HOST}
    port = {self.pop3s_port}
    ssl = yes
  }}
}}
protocol pop3 {{
  pop3_lock_session = yes
}}
"""

    def _passdb(self, root: Path) -> str:
        if self.oauth2 is not None:
            # Tokens only: every login is checked by the authorization server's introspection.
            return f"""passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {root}/dovecot-oauth2.conf.ext
}}"""
        return f"""passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users/%u
}}"""

    @staticmethod
    def _oauth2_config(oauth2: OAuth2Introspection, tls: TlsFiles) -> str:
        scheme, rest = oauth2.url.split("://", 1)
        credentials = f"{quote(oauth2.client_id, safe='')}:{quote(oauth2.client_secret, safe='')}"
        return f"""# generated by devstack/dovecot.py
introspection_mode = post
introspection_url = {scheme}://{credentials}@{rest}
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
tls_ca_cert_file = {tls.ca_file}
timeout_msecs = 5000
"""

    def _master_pid(self) -> int | None:
        if self.root is None:
            return None
        try:
            return int(self.base_dir.joinpath("master.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _kill(self) -> None:
        """Stop the master (PID from master.pid, else our child) and wait until all are gone."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        pid = self._master_pid() or proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            # The master waits up to ~6 s for a login process that is still starting; the folder
            # is thrown away anyway, so do not wait for that.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT)
        # Children (login, auth, pop3) are in the master's process group; make sure none outlive it.
        deadline = time.monotonic() + STOP_TIMEOUT
        while _group_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if _group_members(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.base_dir.joinpath("master.pid").unlink()

    def stop(self) -> None:
        """Stop Dovecot (never leaving a process behind) and remove its folder. Idempotent."""
        try:
            self._kill()
        finally:
            _live.discard(self)
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = None
            self._users.clear()
            self._tls_in_use = None

    # ------------------------------------------------------------------ users

    def add_user(self, name: str, password: str) -> None:
        """Create a POP3 user with an empty Maildir, or give an existing one a new password.

        Works while Dovecot runs: a new user can log in at once. A new password of an existing
        user is seen within a second (Dovecot's passwd-file re-check interval).
        """
        if not _NAME_OK.match(name):
            raise ValueError(f"unsupported user name {name!r}")
        if not password or any(ch in password for ch in ":\r\n\0"):
            raise ValueError("password must be non-empty and contain no ':' or line breaks")
        mail_uid, mail_gid = _mail_ids()
        with self._lock:
            maildir = self.maildir(name)
            for path in (self.home(name), maildir, maildir / "tmp", maildir / "new", maildir / "cur"):
                path.mkdir(exist_ok=True)
                os.chown(path, mail_uid, mail_gid)
                path.chmod(0o700)
            target = self.passwd_path(name)
            previous_mtime = int(target.stat().st_mtime) if target.exists() else 0
            tmp = target.with_name(f".{name}.tmp")
            tmp.write_text(f"{name}:{{PLAIN}}{password}:{mail_uid}:{mail_gid}::{self.home(name)}::\n")
            tmp.chmod(0o644)
            # Dovecot notices a change by mtime (whole seconds) or size: make sure the mtime moves.
            mtime = max(int(time.time()), previous_mtime + 1)
            os.utime(tmp, (mtime, mtime))
            tmp.replace(target)
            self._users[name] = password

    @property
    def users(self) -> dict[str, str]:
        return dict(self._users)

    # ------------------------------------------------------------------- mail

    def _next_stamp(self) -> tuple[int, int]:
        """A (seconds, microseconds) pair strictly after the previous delivery's."""
        now = time.time_ns() // 1000
        stamp = divmod(now, 1_000_000)
        if stamp <= self._last_stamp:
            secs, usecs = self._last_stamp
            usecs += 1
            stamp = (secs + usecs // 1_000_000, usecs % 1_000_000)
        self._last_stamp = stamp
        return stamp

    def deliver(self, user: str, raw: bytes) -> str:
        """Put *raw* into the user's ``Maildir/new/`` as a new message; return its file name.

        Names follow the Maildir convention ``<secs>.M<usecs>P<pid>Q<n>.<host>``, strictly
        increasing, so Dovecot assigns UIDs (and POP3 message numbers) in delivery order.
        """
        if user not in self._users:
            raise KeyError(f"unknown user {user!r}; add_user() first")
        mail_uid, mail_gid = _mail_ids()
        with self._lock:
            secs, usecs = self._next_stamp()
            name = f"{secs}.M{usecs}P{os.getpid()}Q{next(self._seq)}.devstack"
            maildir = self.maildir(user)
            tmp = maildir / "tmp" / name
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(raw)
            os.chown(tmp, mail_uid, mail_gid)
            os.rename(tmp, maildir / "new" / name)
        return name

    def mailbox(self, user: str) -> list[bytes]:
        """Raw bytes of every message now in the user's ``new/`` and ``cur/``, in delivery order."""
        maildir = self.maildir(user)
        found: list[tuple[tuple[int, int, str], Path]] = []
        for sub in ("new", "cur"):
            folder = maildir / sub
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                base = path.name.split(":", 1)[0]
                match = _DELIVERY_NAME.match(base)
                if match:
                    key = (int(match.group(1)), int(match.group(2)), base)
                else:
                    key = (int(path.stat().st_mtime), 0, base)
                found.append((key, path))
        found.sort(key=lambda item: item[0])
        messages = []
        for key, path in found:
            try:
                messages.append(path.read_bytes())
            except FileNotFoundError:
                # Dovecot moved it new/ → cur/ (or renamed it for flags) after we listed it.
                moved = sorted((maildir / "cur").glob(f"{key[2]}:*"))
                if moved:
                    with contextlib.suppress(FileNotFoundError):
                        messages.append(moved[0].read_bytes())
        return messages

    def wait_until_released(self, user: str, password: str, timeout: float = 5.0) -> None:
        """Until a POP3 login of ``user`` is no longer refused as ``[IN-USE]``: a session whose
        connection was cut keeps the mailbox's lock until Dovecot has noticed (a test that polls
        again at once would otherwise race that)."""
        deadline = time.monotonic() + timeout
        while True:
            client = poplib.POP3(HOST, self.pop3_port, timeout=timeout)
            try:
                client.user(user)
                client.pass_(password)
                client.quit()
                return
            except poplib.error_proto as error:
                client.close()
                if b"IN-USE" not in error.args[0] or time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def log_text(self) -> str:
        """Everything Dovecot logged so far (plus anything it printed before logging was up)."""
        if self.root is None:
            return ""
        parts = []
        for name in ("dovecot.stdout", "dovecot.log"):
            with contextlib.suppress(OSError):
                text = self._path(name).read_text(errors="replace")
                if text:
                    parts.append(text)
        return "\n".join(parts)
