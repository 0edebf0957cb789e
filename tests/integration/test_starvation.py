"""A partner's message is reached (DESIGN §6, issue 17 items 1-3), through the real handler against
Dovecot, aiosmtpd and moto server: past the mailbox memory's cap, behind unretrievable messages,
after a corrected keyword in a warm function instance."""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from typing import Any

import pytest
from typer.testing import CliRunner

from app.root import WARM
from cli.main import app
from devstack import aws
from devstack.invoke import FakeLambdaContext, invoke_poll, store_channel
from devstack.proxy import TcpProxy
from devstack.samples import VALID_IMPORT, partner_mail
from devstack.stack import LocalStack
from handlers.poll import PollFailed
from settings import poll_settings

pytestmark = pytest.mark.integration

EVENT = {"channel_id": "acme"}


@dataclass
class LooksBudget(FakeLambdaContext):
    """A Lambda context whose time lasts for ``looks`` questions after the handler's first (the
    lease), one per message the poll starts: deterministic however busy the machine is."""

    looks: int = 0
    asked: int = field(default=0, init=False)

    def get_remaining_time_in_millis(self) -> int:
        margin_ms = poll_settings().time_margin_seconds * 1000
        self.asked += 1
        return margin_ms + (60_000 if self.asked <= self.looks + 1 else 0)


def mailbox_memory(stack: LocalStack) -> dict[str, Any]:
    item = aws.client("dynamodb", stack.endpoint_url).get_item(
        TableName=stack.names.state_table, Key={"pk": {"S": "mailbox#acme"}}, ConsistentRead=True
    )
    return dict(item["Item"])


def test_a_partner_message_behind_more_foreign_mail_than_the_memory_holds_is_processed_at_the_next_poll(
    stack: LocalStack, mailbox: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a memory that holds 4 foreign messages, 2 older ones looked at per poll, 20 foreign
    # messages and polls whose time lasts for 10 messages: the excess alone uses up a poll's time
    monkeypatch.setattr("domain.mailbox_memory.MAX_FOREIGN", 4)
    monkeypatch.setattr("domain.mailbox_memory.MAX_OLDER_PER_POLL", 2, raising=False)
    store_channel(stack, mailbox)
    foreign = [partner_mail(subject=f"Newsletter {n}") for n in range(20)]
    for raw in foreign:
        stack.dovecot.deliver(mailbox[0], raw)
    learning = [invoke_poll(EVENT, LooksBudget(looks=10)) for _ in range(2)]
    raw = partner_mail()
    stack.dovecot.deliver(mailbox[0], raw)
    WARM.memories.clear()  # a new function instance: where to go on comes from the state table

    # When the next poll runs
    result = invoke_poll(EVENT, LooksBudget(looks=10))

    # Then it looks at 2 older messages and the new one, which it answers
    assert [r["seen"] for r in learning] == [10, 2]
    assert (result["seen"], result["recognized"], result["processed"], result["deleted"]) == (3, 1, 1, 1)
    [mail] = stack.smtp.wait_for(1)
    assert (
        message_from_bytes(mail.data, policy=policy.default)["In-Reply-To"]
        == (message_from_bytes(raw, policy=policy.default)["Message-ID"])
    )
    assert stack.dovecot.mailbox(mailbox[0]) == foreign
    assert len(mailbox_memory(stack)["foreign"]["B"]) == 4 * 6


def test_unretrievable_messages_use_up_no_batch_and_channel_show_counts_them(
    stack: LocalStack,
    mailbox: tuple[str, str],
    proxy_to: Callable[[int], TcpProxy],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given two messages that break the connection at every RETR, in front of two partner
    # messages, a batch of 2 and one attempt
    proxy = proxy_to(stack.dovecot.pop3_port)
    store_channel(
        stack,
        mailbox,
        pop3_security="none",
        pop3_host=proxy.host,
        pop3_port=proxy.port,
        max_attempts=1,
        max_messages_per_poll=2,
    )
    appendix = ("appendix.pdf", bytes(range(256)) * 1200)
    broken = [partner_mail(attachments=[("orders.csv", VALID_IMPORT), appendix]) for _ in range(2)]
    fine = [partner_mail(), partner_mail(subject="LetterShop import 2")]
    for raw in broken + fine:
        stack.dovecot.deliver(mailbox[0], raw)
    proxy.cut_after(20_000)  # every connection breaks inside a big message's RETR
    for _ in range(2):
        with pytest.raises(PollFailed, match="POP3 connection lost"):
            invoke_poll(EVENT)
    proxy.reset()
    capsys.readouterr()

    # When the channel is polled
    result = invoke_poll(EVENT)
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    again = invoke_poll(EVENT)

    # Then both partner messages are processed, the two broken ones skipped, counted and shown
    assert (result["processed"], result["recognized"], result["skipped"], result["deferred"]) == (2, 2, 2, 0)
    assert stack.dovecot.mailbox(mailbox[0]) == broken
    assert len(stack.smtp.wait_for(2)) == 2
    [metrics] = emitted
    assert metrics["MessageUnretrievable"] == [1.0, 1.0]
    assert (again["seen"], again["skipped"]) == (0, 2)
    shown = CliRunner().invoke(app, ["channel", "show", "acme"], env={"POWERTOOLS_METRICS_DISABLED": "true"})
    assert shown.exit_code == 0, shown.output
    assert "last outcome: ok: 2 processed, 2 skipped (unretrievable)" in shown.output
    assert "skipped as unretrievable: 2 message(s) left on the mail server" in shown.output

    # And once the operator removed them on the mail server, the next poll says so
    for folder in ("new", "cur"):
        for path in (stack.dovecot.maildir(mailbox[0]) / folder).iterdir():
            path.unlink()
    assert "skipped" not in invoke_poll(EVENT)
    shown = CliRunner().invoke(app, ["channel", "show", "acme"], env={"POWERTOOLS_METRICS_DISABLED": "true"})
    assert "last outcome: ok" in shown.output
    assert "skipped" not in shown.output


def test_a_corrected_keyword_takes_effect_at_the_next_poll_of_a_warm_instance(
    stack: LocalStack, mailbox: tuple[str, str]
) -> None:
    # Given a partner message that arrived while the keyword was wrong: remembered as foreign
    item = store_channel(stack, mailbox, subject_keyword="Shipments")
    raw = partner_mail(subject="LetterShop import")
    stack.dovecot.deliver(mailbox[0], raw)
    first = invoke_poll(EVENT)
    assert (first["seen"], first["recognized"]) == (1, 0)
    assert invoke_poll(EVENT)["seen"] == 0  # remembered: not looked at again

    # When the operator fixes the keyword in the channel item, and the same (warm) process polls
    item["subject_keyword"] = "LetterShop"
    aws.put_channel(stack.endpoint_url, stack.names.channels_table, item)
    result = invoke_poll(EVENT)

    # Then the message is looked at again and processed
    assert (result["seen"], result["processed"], result["deleted"]) == (1, 1, 1)
    assert len(stack.smtp.wait_for(1)) == 1
    assert stack.dovecot.mailbox(mailbox[0]) == []
    assert mailbox_memory(stack)["recognition"] == {"S": "keyword:lettershop"}
