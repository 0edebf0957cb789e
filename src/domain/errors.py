"""The one exception hierarchy of the e-mail channel: whose failure is it (DESIGN §6).

The classes are siblings, so no ``except`` clause has to come before another. What each one does to
a message is decided in one place, ``service.failures.consequence_of``:

* ``TransientError``     the message's attempt failed for now (network, throttling, "try later"):
                         it is deferred, one attempt is counted, it is quarantined after ``max_attempts``.
* ``ConnectionLost``     the POP3 session broke: nothing more can be done in it; the message waits,
                         no attempt is counted, the poll ends in ``error``.
* ``ChannelFailure``     the channel (or the deployment) is not usable: a refused login, a missing
                         secret, TLS not offered, an unknown host, an access denied. The poll stops in
                         ``error``; no message is charged an attempt; ``setting`` names what to fix.
* ``UndeliverableReply`` the reply can never reach this sender (recipient refused for good, SMTPUTF8
                         needed and not offered): that message is settled ``failed`` without a reply.
* ``ReplyTooLarge``      the reply is larger than the relay (or SES) takes: that message is settled
                         ``failed``, and the partner gets a short notice naming both sizes instead.
* ``PermanentError``     an import file (or the whole message) cannot be processed as it is: the
                         partner gets an error reply. Raised and caught inside ``service.decide``.
* ``RejectedMessage``    a recognised message that is not answered: stranger, automatic, unparsable.
"""


class LetterShopError(Exception):
    """Base of every error this service raises on purpose."""


class TransientError(LetterShopError):
    """Network trouble, throttling, a server that said "try later": worth another attempt."""


class ConnectionLost(LetterShopError):
    """The mail server connection broke mid-session: nothing more can be done in this session."""


class ChannelFailure(LetterShopError):
    """The channel's configuration or the deployment is not usable; an operator must fix ``setting``."""

    def __init__(self, message: str, *, setting: str = "") -> None:
        super().__init__(message)
        self.setting = setting


class UndeliverableReply(LetterShopError):
    """The reply cannot be delivered to this recipient, now or later: the message's own problem."""


class ReplyTooLarge(LetterShopError):
    """The reply (``size`` bytes) is more than the relay or SES takes (``limit`` bytes, None when it
    did not say): the message's own problem, never the channel's."""

    def __init__(self, message: str, *, size: int, limit: int | None) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class PermanentError(LetterShopError):
    """The message cannot be processed as it is; the partner is told why."""


class InvalidImportFile(PermanentError):
    """An import file that cannot be read at all (no valid header, not text)."""


class ScriptFailed(PermanentError):
    """A pre- or postscript that is missing, exited non-zero, timed out or left no file."""


class RejectedMessage(LetterShopError):
    """A recognised message that is not answered: stranger, automatic, too large, unparsable."""
