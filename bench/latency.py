"""The poll under realistic latency (issue 21): the goals of ``make bench``, each against a bare client
run through the same proxies in the same run.

On loopback every round trip costs microseconds, so the ratios there say little about a poll in
Lambda, where a mail server is tens of milliseconds away and every AWS request a few. Here the
project's TCP proxy (``devstack.proxy``, one-way ``latency``: each chunk forwarded that long after it
arrived, a new connection waits one round trip first, ``TCP_NODELAY``) stands between the poll and
moto, Dovecot (POP3S) and aiosmtpd (STARTTLS + AUTH), and between the bare client and the same two
mail servers. moto's server closes its connection after every response (AWS keeps it open), so its
proxy charges no handshake. The bare client is the least a mail loop does and keeps no ledger, no archive, no
serials: ``poplib`` login, ``RETR``, ``email`` parse, ``smtplib`` send of a reply carrying the
attachment, ``DELE``, ``QUIT``.

========================================  ====================================  ==========
figure                                    same-run floor                        goal
========================================  ====================================  ==========
warm empty poll: AWS requests             -                                     1
warm empty poll: wall (median)            bare login+STAT+QUIT                  <= 1.05x
one new message picked up and answered    bare login, RETR, parse, SMTP, DELE   <= 1.15x
drain of 30: throughput                   bare loop over the 30 messages        >= 1.0x
drain of 30: AWS requests per message     (beyond a poll of one message) / 29   <= 5
========================================  ====================================  ==========

Settled ledger entries are removed between rounds, outside the timing: moto's ``TransactWriteItems``
copies the whole table, so a table grown by earlier rounds would slow later ones (DynamoDB does not).

``python -m bench.latency`` runs only this part (``make bench`` runs it with the rest).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import smtplib
import ssl
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from functools import partial
from typing import Any

from bench.common import interleaved_medians, ms, timed, verdict
from bench.polls import (
    DRAIN_IMPORT,
    Handler,
    Poll,
    Pop3Login,
    bare_reply,
    between_heartbeats,
    drained,
    failed,
    guarded,
    local_stack,
)
from bench.probes import ApiCalls
from devstack import aws
from devstack.invoke import store_channel
from devstack.proxy import TcpProxy
from devstack.samples import partner_mail
from devstack.stack import LocalStack

EMPTY_CALLS_GOAL = 1
EMPTY_WALL_GOAL = 1.05
ONE_MESSAGE_GOAL = 1.15
DRAIN_THROUGHPUT_GOAL = 1.0
DRAIN_CALLS_GOAL = 5.0

EMPTY_RUNS = 15
ONE_MESSAGE_RUNS = 5
DRAIN_MESSAGES = 30
COST_RUNS = 10


@dataclass(frozen=True)
class Profile:
    """One-way delays of the proxies: an AWS request costs about twice ``aws_s`` (plus moto's own
    time), a mail command about twice ``mail_s``."""

    name: str
    aws_s: float
    mail_s: float


PROFILES = (
    Profile("in-region AWS, remote mail", aws_s=0.008, mail_s=0.020),
    Profile("slow mail", aws_s=0.008, mail_s=0.060),
)
_SERIAL = itertools.count(1)


# ------------------------------------------------------------------ the proxies


@dataclass
class Proxies:
    """One proxy in front of moto, one in front of Dovecot's POP3S port, one in front of the SMTP
    server (STARTTLS + AUTH); while in force, the handler's ``AWS_ENDPOINT_URL`` is moto's proxy."""

    aws: TcpProxy
    pop3: TcpProxy
    smtp: TcpProxy

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.aws.host}:{self.aws.port}"


@contextlib.contextmanager
def proxied(stack: LocalStack, profile: Profile) -> Iterator[Proxies]:
    """The three proxies with the profile's latency; the warm state is reset on both ends, so every
    AWS client of the handler is made afresh against the proxy (and after it, against moto)."""
    from app.root import WARM  # noqa: PLC0415  # the handler's modules: after local_stack() set the env

    proxies = Proxies(
        TcpProxy(stack.moto.port), TcpProxy(stack.dovecot.pop3s_port), TcpProxy(stack.smtp.port)
    )
    started: list[TcpProxy] = []
    saved = os.environ["AWS_ENDPOINT_URL"]
    try:
        for proxy, seconds in (
            (proxies.aws, profile.aws_s),
            (proxies.pop3, profile.mail_s),
            (proxies.smtp, profile.mail_s),
        ):
            proxy.start()
            started.append(proxy)
            # moto's server (werkzeug) closes the connection after every response, where AWS keeps
            # it open: a handshake per request would be the dev server's cost, not the poll's
            proxy.latency(seconds, handshake=proxy is not proxies.aws)
        os.environ["AWS_ENDPOINT_URL"] = proxies.endpoint_url
        WARM.reset()
        yield proxies
    finally:
        os.environ["AWS_ENDPOINT_URL"] = saved
        WARM.reset()
        for proxy in started:
            proxy.stop()


# ------------------------------------------------------------- the bare client


@dataclass(frozen=True)
class Bare:
    """The bare client's two servers (through the proxies) and logins."""

    pop3: Pop3Login
    smtp_host: str
    smtp_port: int
    smtp_user: str
    smtp_password: str

    def smtp(self) -> smtplib.SMTP:
        context = ssl.create_default_context(cafile=str(self.pop3.ca_file))
        client = smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=30)
        client.starttls(context=context)
        client.login(self.smtp_user, self.smtp_password)
        return client

    def stat(self) -> None:
        """The least an empty poll does: log in, STAT, QUIT."""
        client = self.pop3.connect()
        client.stat()
        client.quit()

    def drain(self) -> int:
        """Every message: RETR, parse, reply with its attachment over one SMTP session, DELE; QUIT."""
        pop = self.pop3.connect()
        count, _ = pop.stat()
        if count:
            with self.smtp() as smtp:
                for number in range(1, count + 1):
                    _, lines, _ = pop.retr(number)
                    smtp.send_message(bare_reply(b"\r\n".join(lines)))
                    pop.dele(number)
        pop.quit()
        return int(count)


def import_mail() -> bytes:
    """A partner's message with a small import; never the same bytes twice (a new ledger entry)."""
    return partner_mail(attachments=[(f"orders-{next(_SERIAL)}.csv", DRAIN_IMPORT)])


# ----------------------------------------------------------------- the figures


def clear_ledger(stack: LocalStack) -> None:
    """Remove the ledger entries (outside the timing; see the module's docstring)."""
    client = aws.client("dynamodb", stack.endpoint_url)
    table = stack.names.state_table
    for page in client.get_paginator("scan").paginate(TableName=table, ProjectionExpression="pk"):
        for item in page.get("Items", []):
            if item["pk"]["S"].startswith("ledger#"):
                client.delete_item(TableName=table, Key={"pk": item["pk"]})


def costs(stack: LocalStack, proxies: Proxies, bare: Bare) -> bool:
    """What one AWS request, one POP3 command and one SMTP send cost through the proxies."""
    dynamodb: Any = aws.client("dynamodb", proxies.endpoint_url)
    key = {"channel_id": {"S": "lat-empty"}}
    table = stack.names.channels_table

    def request() -> None:
        dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)

    request()
    aws_s = statistics.median(timed(request) for _ in range(COST_RUNS))
    login_s = statistics.median(timed(lambda: bare.pop3.connect().quit()) for _ in range(3))
    pop = bare.pop3.connect()
    noop_s = statistics.median(timed(pop.noop) for _ in range(COST_RUNS))
    pop.quit()
    smtp_login_s = statistics.median(timed(lambda: bare.smtp().quit()) for _ in range(3))
    note = EmailMessage()
    note["From"], note["To"], note["Subject"] = "bench@operator.example", "orders@partner.example", "cost"
    note.set_content("one send")
    with bare.smtp() as smtp:
        send_s = statistics.median(timed(lambda: smtp.send_message(note)) for _ in range(5))
    print(
        f"{'one request through the proxies':<34} AWS (DynamoDB GetItem) {ms(aws_s)}; POP3 command (NOOP) "
        f"{ms(noop_s)}; SMTP send (MAIL, RCPT, DATA, text) {ms(send_s)}"
    )
    print(
        f"{'':<34} a new session: POP3S connect+TLS+USER+PASS+QUIT {ms(login_s)}, "
        f"SMTP connect+STARTTLS+AUTH+QUIT {ms(smtp_login_s)}"
    )
    return True


def empty_poll(handler: Handler, bare: Bare, label: str) -> bool:
    clock = between_heartbeats("lat-empty")  # the heartbeat's share: bench.polls.heartbeat_share
    handler.poll("lat-empty", clock=clock)  # warm: secrets read, clients made
    polls: list[Poll] = []
    ours, floor = interleaved_medians(
        EMPTY_RUNS, lambda: handler.poll("lat-empty", polls, clock).seconds, lambda: timed(bare.stat)
    )
    most = max(polls, key=lambda p: p.calls.count)
    problem = next((p.counts(seen=0) for p in polls if p.counts(seen=0)), None)
    ok = verdict(
        most.calls.count <= EMPTY_CALLS_GOAL and problem is None,
        f"{label}: warm empty poll: AWS requests {most.calls.count} ({most.calls.breakdown()}; "
        f"goal {EMPTY_CALLS_GOAL})" + (f"; {problem}" if problem else ""),
    )
    ratio = ours / floor
    ok &= verdict(
        ratio <= EMPTY_WALL_GOAL,
        f"{label}: warm empty poll: wall {ratio:.3f}x bare login+STAT+QUIT ({ms(ours)} vs {ms(floor)}, "
        f"medians of {EMPTY_RUNS}; goal <= {EMPTY_WALL_GOAL}x)",
    )
    return ok


def one_message(stack: LocalStack, handler: Handler, ours_box: str, bare: Bare, label: str) -> bool:
    handler.poll("lat-one")  # warm
    polls: list[Poll] = []

    def ours() -> float:
        clear_ledger(stack)
        stack.dovecot.deliver(ours_box, import_mail())
        return handler.poll("lat-one", polls).seconds

    def floor() -> float:
        stack.dovecot.deliver(bare.pop3.user, import_mail())
        return timed(bare.drain)

    ours_s, floor_s = interleaved_medians(ONE_MESSAGE_RUNS, ours, floor)
    problem = next(
        (p.counts(processed=1, deleted=1) for p in polls if p.counts(processed=1, deleted=1)), None
    )
    calls = max(p.calls.count for p in polls)
    ratio = ours_s / floor_s
    return verdict(
        ratio <= ONE_MESSAGE_GOAL and problem is None,
        f"{label}: one new message picked up and answered: {ratio:.3f}x the bare client ({ms(ours_s)} vs "
        f"{ms(floor_s)}, medians of {ONE_MESSAGE_RUNS}; at most {calls} AWS requests; goal <= "
        f"{ONE_MESSAGE_GOAL}x)" + (f"; {problem}" if problem else ""),
    )


def drain(stack: LocalStack, handler: Handler, ours_box: str, bare: Bare, label: str) -> tuple[bool, float]:
    """The drain's throughput, and its AWS requests per message: those of the drain beyond those of a
    poll of one message on the same channel (the lease, the channel item, the status are the poll's,
    whatever the number of messages), over the 29 messages more."""
    handler.poll("lat-drain")  # warm: secrets read, clients made
    clear_ledger(stack)
    stack.dovecot.deliver(ours_box, import_mail())
    single = handler.poll("lat-drain")
    clear_ledger(stack)
    for _ in range(DRAIN_MESSAGES):
        stack.dovecot.deliver(ours_box, import_mail())
    run, problem = drained(stack, handler, "lat-drain", DRAIN_MESSAGES)
    for _ in range(DRAIN_MESSAGES):
        stack.dovecot.deliver(bare.pop3.user, import_mail())
    bare_s = timed(bare.drain)
    ours_rate, bare_rate = DRAIN_MESSAGES / run.seconds, DRAIN_MESSAGES / bare_s
    per_message = (run.calls.count - single.calls.count) / (DRAIN_MESSAGES - 1)
    print(
        f"{f'{label}: drain of {DRAIN_MESSAGES}':<34} {run.seconds:6.2f} s, "
        f"{ms(run.seconds / DRAIN_MESSAGES)} a message; "
        f"bare {bare_s:.2f} s, {ms(bare_s / DRAIN_MESSAGES)} a message"
    )
    print(f"{'':<34} AWS requests {run.calls.count}: {run.calls.breakdown()}")
    ok = verdict(
        per_message <= DRAIN_CALLS_GOAL and problem is None,
        f"{label}: drain of {DRAIN_MESSAGES}: AWS requests per message {per_message:.2f} "
        f"({run.calls.count} in all, {single.calls.count} for a poll of one message; goal <= "
        f"{DRAIN_CALLS_GOAL:g})" + (f"; {problem}" if problem else ""),
    )
    ratio = ours_rate / bare_rate
    ok &= verdict(
        ratio >= DRAIN_THROUGHPUT_GOAL and problem is None,
        f"{label}: drain of {DRAIN_MESSAGES}: throughput {ratio:.3f}x the bare client ({ours_rate:.2f} vs "
        f"{bare_rate:.2f} msg/s; goal >= {DRAIN_THROUGHPUT_GOAL}x)",
    )
    return ok, bare_rate


def exclusive_drain(stack: LocalStack, handler: Handler, ours_box: str, bare_rate: float, label: str) -> bool:
    """Information: the same drain on an exclusive account (no TOP before a download), against the
    bare client's rate of the goal's run. The goals are the shared account's (the default)."""
    handler.poll("lat-exclusive")  # warm
    clear_ledger(stack)
    for _ in range(DRAIN_MESSAGES):
        stack.dovecot.deliver(ours_box, import_mail())
    run = handler.poll("lat-exclusive")
    problem = run.counts(processed=DRAIN_MESSAGES, deleted=DRAIN_MESSAGES)
    ours_rate = DRAIN_MESSAGES / run.seconds
    print(
        f"{f'{label}: exclusive account':<34} information: drain of {DRAIN_MESSAGES} {run.seconds:.2f} s, "
        f"{ms(run.seconds / DRAIN_MESSAGES)} a message, {ours_rate / bare_rate:.3f}x the bare client"
        + (f"; {problem}" if problem else "")
    )
    return problem is None


def profile_figures(stack: LocalStack, handler: Handler, profile: Profile) -> bool:
    print(
        f"latency profile {profile.name!r}: one-way {ms(profile.aws_s)} to moto, {ms(profile.mail_s)} to "
        "Dovecot and aiosmtpd (TCP_NODELAY; a new connection waits one round trip)"
    )
    with proxied(stack, profile) as proxies:
        roles = ("empty", "one", "drain", "exclusive", "bare")
        boxes = {role: stack.new_mailbox(f"lat{role}") for role in roles}
        ports: dict[str, Any] = {"pop3_port": proxies.pop3.port, "smtp_port": proxies.smtp.port}
        store_channel(stack, boxes["empty"], channel_id="lat-empty", exclusive_account=True, **ports)
        store_channel(stack, boxes["one"], channel_id="lat-one", **ports)
        store_channel(
            stack, boxes["drain"], channel_id="lat-drain", max_messages_per_poll=DRAIN_MESSAGES, **ports
        )
        store_channel(
            stack,
            boxes["exclusive"],
            channel_id="lat-exclusive",
            exclusive_account=True,
            max_messages_per_poll=DRAIN_MESSAGES,
            **ports,
        )
        user, password = boxes["bare"]
        login = Pop3Login(stack.dovecot.host, proxies.pop3.port, user, password, stack.ca_file)
        bare = Bare(login, stack.smtp.host, proxies.smtp.port, stack.smtp_user, stack.smtp_password)
        label = profile.name
        ok = guarded(f"{label}: costs", lambda: costs(stack, proxies, bare))
        ok &= guarded(f"{label}: warm empty poll", lambda: empty_poll(handler, bare, label))
        ok &= guarded(
            f"{label}: one new message", lambda: one_message(stack, handler, boxes["one"][0], bare, label)
        )
        try:
            drained, bare_rate = drain(stack, handler, boxes["drain"][0], bare, label)
        except Exception as error:
            return failed(f"{label}: drain", error)
        ok &= drained
        ok &= guarded(
            f"{label}: exclusive drain",
            lambda: exclusive_drain(stack, handler, boxes["exclusive"][0], bare_rate, label),
        )
    return ok


def run(stack: LocalStack, handler: Handler, profiles: tuple[Profile, ...] = PROFILES) -> bool:
    """Every profile's figures on a started stack; True when every goal is met."""
    ok = True
    for profile in profiles:
        ok &= guarded(f"latency profile {profile.name}", partial(profile_figures, stack, handler, profile))
    return ok


def main(names: list[str] | None = None) -> bool:
    """The latency profiles (all, or those whose names start with one of ``names``) on a stack of
    their own; True when every goal is met."""
    chosen = tuple(p for p in PROFILES if not names or any(p.name.startswith(n) for n in names))
    started = time.perf_counter()
    try:
        with ApiCalls() as calls, local_stack() as stack:
            ok = run(stack, Handler(calls), chosen)
    except Exception as error:  # the stack did not start (or stop)
        ok = verdict(False, f"the local stack: {error!r}")
    print(
        f"latency profiles: {'every goal met' if ok else 'FAIL: a goal is not met'} "
        f"({time.perf_counter() - started:.0f} s)"
    )
    return ok


if __name__ == "__main__":
    sys.exit(0 if main(sys.argv[1:]) else 1)
