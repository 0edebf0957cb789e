"""The crash matrix of ``test_recovery.py`` on a Graph channel (issue 22): real poll processes
killed at every step, reading and answering through the Graph-shaped server; nothing lost, nothing
answered twice.

Unlike POP3's ``DELE``, a Graph deletion takes effect at once; the ledger (``replied`` before the
deletion) is what keeps a message deleted after a crash from being answered again.
"""

from email import message_from_bytes, policy

import pytest

from devstack.invoke import store_graph_channel
from devstack.samples import partner_mail
from devstack.stack import LocalStack
from tests.integration.test_recovery import archived_count, expire_lease, run_poll


def replies_by_original(stack: LocalStack) -> dict[str, int]:
    counts: dict[str, int] = {}
    for mail in stack.graph.sent:
        original = str(message_from_bytes(mail.mime, policy=policy.default)["In-Reply-To"])
        counts[original] = counts.get(original, 0) + 1
    return counts


@pytest.mark.parametrize("step", ["retrieved", "archived", "answered", "replied", "deleted", "before_quit"])
def test_a_graph_poll_killed_at_any_step_loses_nothing_and_answers_once(stack: LocalStack, step: str) -> None:
    box = stack.new_graph_mailbox()
    store_graph_channel(stack, box, reply_via="graph", smtp_host=None, smtp_security=None)
    sent = [partner_mail(), partner_mail()]
    for raw in sent:
        stack.graph.deliver(box.user, raw)

    assert run_poll("acme", kill_at=step) == {"killed": True}
    expire_lease(stack, "acme")
    after = run_poll("acme")

    assert after["status"] == "ok"
    ids = [str(message_from_bytes(raw, policy=policy.default)["Message-ID"]) for raw in sent]
    assert replies_by_original(stack) == dict.fromkeys(ids, 1)
    assert archived_count(stack, "inbound/acme/") == 2
    assert stack.graph.messages(box.user) == []
    assert sorted(m.raw for m in stack.graph.messages(box.user, "deleteditems")) == sorted(sent)


def test_a_graph_poll_killed_after_graph_accepted_the_reply_resends_the_identical_reply(
    stack: LocalStack,
) -> None:
    """The window every transport has (SMTP's too): Graph accepted the reply, the process died before
    the ledger said so; the next poll sends the stored reply again, byte for byte, never a new one."""
    box = stack.new_graph_mailbox()
    store_graph_channel(stack, box, reply_via="graph", smtp_host=None, smtp_security=None)
    stack.graph.deliver(box.user, partner_mail())

    assert run_poll("acme", kill_at="sent") == {"killed": True}
    expire_lease(stack, "acme")
    assert run_poll("acme")["status"] == "ok"

    first, second = stack.graph.sent
    assert first.mime == second.mime
    assert archived_count(stack, "exports/acme/") == 1
    assert stack.graph.messages(box.user) == []
