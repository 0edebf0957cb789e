"""The POP3 login of a poll, started while its channel item is still being read.

Most polls find nothing to do, so their wall time is what they cost: reading the channel item and
logging in to the mailbox, one after the other, would be the sum of two round trips. A warm function
remembers the channel it polled last (per channel id); the next poll of that channel logs in with
it in a worker thread while the item is read, and keeps that session only when the item read is
the very same channel. Otherwise — the item changed, is invalid, inactive or gone — the early
session ends with ``QUIT`` before anything was done in it (nothing to commit), and the poll logs in
as usual with the channel it read. An early login that failed counts only for the same channel: its
failure is the poll's, exactly as if the poll had logged in itself, and never a second attempt.
"""

import sys
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from domain.channel import Channel
from service.ports import MailboxSession
from service.telemetry import logger

if TYPE_CHECKING:
    from service.poll import Ports, Wiring

_last: dict[str, Channel] = {}


def remember(channel: Channel) -> None:
    """The channel a poll was started with: the next poll of it may log in early."""
    _last[channel.channel_id] = channel


def forget_channels() -> None:
    """As after a cold start (tests start each case so)."""
    _last.clear()


@dataclass
class _Outcome:
    session: MailboxSession | None = None
    error: BaseException | None = None


class EarlyLogin:
    """A login started with the channel a poll of ``channel_id`` used last, if there was one."""

    def __init__(self, wiring: "Wiring", channel_id: str) -> None:
        self._channel = _last.get(channel_id)
        self._ports: Ports | None = None
        self._context: AbstractContextManager[MailboxSession] | None = None
        self._outcome = _Outcome()
        self._thread: threading.Thread | None = None
        if self._channel is None or not self._channel.active:
            return
        try:
            self._ports = wiring.ports(self._channel)  # secrets: cached, so this thread is quick
        except Exception:  # the poll itself will meet and report it
            self._channel = None
            return
        context = self._context = self._ports.mailbox.session()
        self._thread = threading.Thread(target=self._enter, args=(context,), daemon=True)
        self._thread.start()

    def _enter(self, context: AbstractContextManager[MailboxSession]) -> None:
        try:
            self._outcome.session = context.__enter__()
        except BaseException as error:  # handed to the poll in take()
            self._outcome.error = error

    def take(self, channel: Channel) -> "tuple[Ports, AbstractContextManager[MailboxSession]] | None":
        """The ports and the open session, when they were made for ``channel`` as it is now;
        raises what the early login raised for it. None (the early session ended) otherwise."""
        if self._thread is None or self._channel != channel:
            self.discard()
            return None
        self._thread.join()
        self._thread = None
        if self._outcome.error is not None:
            raise self._outcome.error
        ports, context, session = self._ports, self._context, self._outcome.session
        if ports is None or context is None or session is None:
            raise RuntimeError("an early login without its session")  # never: set with the thread
        return ports, _entered(context, session)

    def discard(self) -> None:
        """End the early session, if there is one that was not taken (``QUIT``: nothing was done)."""
        if self._thread is None:
            return
        self._thread.join()
        self._thread = None
        if self._outcome.session is not None and self._context is not None:
            logger.debug("the early login was for a channel that changed; ending it")
            with suppress(Exception):
                self._context.__exit__(None, None, None)


@contextmanager
def _entered(
    context: AbstractContextManager[MailboxSession], session: MailboxSession
) -> Iterator[MailboxSession]:
    """A context that was entered already, in another thread: leaving it leaves ``context``."""
    try:
        yield session
    except BaseException:
        if not context.__exit__(*sys.exc_info()):
            raise
    else:
        context.__exit__(None, None, None)
