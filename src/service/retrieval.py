"""Messages whose RETR keeps breaking the POP3 connection, counted by UIDL (DESIGN §6).

Such a message cannot even be read, so it has no ledger entry; the count lives in the channel's
``MailboxMemory`` (saved at the end of the poll). After ``max_attempts`` broken downloads the message
is skipped before it is looked at, each poll: it no longer stops the messages behind it, it counts
against neither ``max_messages_per_poll`` nor the time budget, and it stays on the server for an
operator (the poll result's ``skipped``, ``lettershop channel show``, alarm ``MessageUnretrievable``).
"""

from aws_lambda_powertools.metrics import MetricUnit

from domain.channel import Channel
from domain.mailbox_memory import MailboxMemory
from service.ports import MessageRef
from service.telemetry import logger, metrics


class RetrievalFailures:
    def __init__(self, memory: MailboxMemory, channel: Channel) -> None:
        self.memory = memory
        self._channel = channel

    def given_up(self, ref: MessageRef) -> bool:
        """The connection broke ``max_attempts`` times while this message was downloaded: skip it."""
        failures = self.memory.failures_of(ref.uid) if ref.uid else 0
        if failures < self._channel.max_attempts:
            return False
        logger.error(
            "message cannot be retrieved (the connection broke %d times); skipped, left on the server",
            failures,
            extra={"uidl": ref.uid, "size": ref.size},
        )
        metrics.add_metric(name="MessageUnretrievable", unit=MetricUnit.Count, value=1)
        return True

    def count_failure(self, ref: MessageRef) -> None:
        if ref.uid:
            self.memory = self.memory.with_failure(ref.uid)
