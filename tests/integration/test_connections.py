"""Connections follow the item just read (DESIGN §6, amended turn 3): a warm poll opens no
connection, and sends no credential, with the settings of an earlier item of its channel."""

from collections.abc import Iterator

import pytest

from devstack.invoke import invoke_poll, store_channel
from devstack.proxy import TcpProxy
from devstack.samples import partner_mail
from devstack.stack import LocalStack

pytestmark = pytest.mark.integration

EVENT = {"channel_id": "acme"}


@pytest.fixture
def servers(stack: LocalStack) -> Iterator[tuple[TcpProxy, TcpProxy]]:
    """Two "mail servers" for the channel to move between: proxies to the one Dovecot, each
    counting the connections made to it."""
    old, new = TcpProxy(stack.dovecot.pop3s_port), TcpProxy(stack.dovecot.pop3s_port)
    old.start()
    new.start()
    yield old, new
    old.stop()
    new.stop()


def test_a_warm_poll_after_the_channel_moved_never_connects_to_the_old_server(
    stack: LocalStack, mailbox: tuple[str, str], servers: tuple[TcpProxy, TcpProxy]
) -> None:
    old, new = servers
    store_channel(stack, mailbox, pop3_port=old.port)
    assert invoke_poll(EVENT)["status"] == "ok"
    assert (old.connections, new.connections) == (1, 0)

    store_channel(stack, mailbox, pop3_port=new.port)  # the operator moves the mailbox
    stack.dovecot.deliver(mailbox[0], partner_mail())
    moved = invoke_poll(EVENT)  # the same warm function instance

    assert (moved["status"], moved["processed"], moved["deleted"]) == ("ok", 1, 1)
    assert (old.connections, new.connections) == (1, 1)


def test_a_warm_poll_of_a_deactivated_channel_opens_no_connection(
    stack: LocalStack, mailbox: tuple[str, str], servers: tuple[TcpProxy, TcpProxy]
) -> None:
    old, _ = servers
    store_channel(stack, mailbox, pop3_port=old.port)
    assert invoke_poll(EVENT)["status"] == "ok"
    store_channel(stack, mailbox, pop3_port=old.port, active=False)
    stack.dovecot.deliver(mailbox[0], partner_mail())

    assert invoke_poll(EVENT)["status"] == "inactive"
    assert old.connections == 1
    assert len(stack.dovecot.mailbox(mailbox[0])) == 1
