"""Messages whose RETR keeps breaking the POP3 connection, counted by UIDL (DESIGN §6).

Such a message cannot even be read, so it has no ledger entry; after ``max_attempts`` broken
downloads it is skipped, so it no longer stops every poll before the messages behind it, and it
stays on the server for an operator (alarm ``MessageUnretrievable``).
"""

from aws_lambda_powertools.metrics import MetricUnit

from domain.channel import Channel
from domain.errors import TransientError
from service.ports import Ledger, MessageRef
from service.telemetry import logger, metrics


class RetrievalFailures:
    def __init__(self, ledger: Ledger, channel: Channel) -> None:
        self._ledger = ledger
        self._channel = channel

    def given_up(self, ref: MessageRef) -> bool:
        """The connection broke ``max_attempts`` times while this message was downloaded: skip it."""
        if not ref.uid:
            return False
        try:
            failures = self._ledger.retrieval_failures(self._channel.channel_id, ref.uid)
        except TransientError:
            return False
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
        if not ref.uid:
            return
        try:
            self._ledger.count_retrieval_failure(self._channel.channel_id, ref.uid)
        except TransientError as error:
            logger.warning("retrieval failure not recorded: %s", error)
