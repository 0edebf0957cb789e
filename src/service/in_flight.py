"""What a message carries while it is being settled (``service.message``), and the two requests
that may run beside the mail servers' round trips (issue 21): the raw message's archive copy,
started after RETR, and a sent reply's ``replied`` record, written while the next message is
downloaded. Each runs on a thread of its own, one of each kind at a time, and is waited for before
the step of DESIGN §6 that needs it (the answer is stored after the copy; the DELE after the record).
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

from domain.inbound import Headers
from domain.ledger import LedgerEntry
from service.ports import MessageRef


class Upload:
    """One request on a thread of its own, while the message's thread waits for the mail servers:
    the raw message's archive copy (started after RETR, so that the upload and the ledger's claim
    wait for the network together), or a sent reply's ``replied`` record (``Handover``)."""

    def __init__(self, work: Callable[[], object], name: str = "archive-inbound") -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(work,), name=name, daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[], object]) -> None:
        try:
            work()
        except BaseException as error:  # handed to the message's thread by ``wait``
            self._error = error

    def wait(self) -> None:
        """Until the work is done; raises what it raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error


@dataclass(frozen=True)
class Handover:
    """A reply sent, its ``replied`` record on its way: the message's DELE waits for the record,
    and goes after the next message's RETR (``service.message.MessageSettler``)."""

    ref: MessageRef
    recorded: Upload


@dataclass
class InFlight:
    """One message being settled; ``entry`` is its ledger entry as last saved (None before RETR)."""

    ref: MessageRef
    received: datetime
    raw: BinaryIO
    screened: Headers | None = None  # from TOP (a shared account), else read from the RETR
    digest: str = ""
    entry: LedgerEntry | None = None
    reply: bytes | None = None  # the stored reply, while this poll still holds it in memory
    upload: Upload | None = None  # the archive copy on its way (``Upload``), until waited for

    def uploaded(self) -> bool:
        """Wait for the archive copy on its way, if one is: True when it was stored (raises what
        storing it raised); False when none was sent."""
        upload, self.upload = self.upload, None
        if upload is None:
            return False
        upload.wait()
        return True

    @property
    def headers(self) -> Headers:
        if self.screened is None:
            raise RuntimeError("the message's headers are read with it (RETR) on an exclusive account")
        return self.screened

    @property
    def ledger_entry(self) -> LedgerEntry:
        if self.entry is None:
            raise RuntimeError("the message has no ledger entry before it was retrieved")
        return self.entry
