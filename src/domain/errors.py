"""The one exception hierarchy of the e-mail channel.

Every failure of a message ends in exactly one outcome (DESIGN §6); the class of the error decides it:

* ``TransientError``  -> ``deferred``: the message stays on the server and is tried again.
* ``PermanentError``  -> ``failed``: the partner gets an error reply, the message is archived and deleted.
* ``RejectedMessage`` -> ``rejected``: no reply, the raw message is quarantined and deleted.

``ConfigurationError`` is about the channel, not a message: the poll stops before touching the mailbox.
"""


class LetterShopError(Exception):
    """Base of every error this service raises on purpose."""


class TransientError(LetterShopError):
    """Network trouble, throttling, a server that said "try later": worth another attempt."""


class ConnectionLost(TransientError):
    """The mail server connection broke mid-session: nothing more can be done in this session."""


class PermanentError(LetterShopError):
    """The message cannot be processed as it is; the partner is told why."""


class InvalidImportFile(PermanentError):
    """An import file that cannot be read at all (no valid header, not text)."""


class ScriptFailed(PermanentError):
    """A pre- or postscript that is missing, exited non-zero, timed out or left no file."""


class RejectedMessage(LetterShopError):
    """A recognised message that is not answered: stranger, automatic, too large, unparsable."""


class ConfigurationError(LetterShopError):
    """The channel or the deployment is not usable (invalid item, missing secret)."""
