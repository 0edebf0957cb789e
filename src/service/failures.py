"""Whose failure is it (DESIGN §6): the one mapping from an error to what happens to the message.

The error classes of ``domain.errors`` are siblings; this table, not the order of ``except`` clauses,
decides. The message handler applies the consequence in one place (``MessageSettler._on_failure``).

| error                   | consequence    | the message                                   | the poll    |
|-------------------------|----------------|-----------------------------------------------|-------------|
| ``ChannelFailure``      | ``STOP``       | stays; claim released, no attempt counted     | stops       |
| ``ConnectionLost``      | ``DISCONNECT`` | stays; claim released, no attempt counted     | ends        |
| ``UndeliverableReply``  | ``SETTLE``     | settled ``failed`` without a reply; deleted   | goes on     |
| ``ReplyTooLarge``       | ``NOTIFY``     | settled ``failed``; a short notice naming the | goes on     |
|                         |                | reply's size and the limit is its answer      |             |
| anything else           | ``DEFER``      | stays; one attempt; quarantined at the limit  | goes on     |
"""

from enum import StrEnum

from domain.errors import ChannelFailure, ConnectionLost, ReplyTooLarge, UndeliverableReply


class Consequence(StrEnum):
    STOP = "stop"
    DISCONNECT = "disconnect"
    SETTLE = "settle"
    NOTIFY = "notify"
    DEFER = "defer"


_CONSEQUENCES: dict[type[BaseException], Consequence] = {
    ChannelFailure: Consequence.STOP,
    ConnectionLost: Consequence.DISCONNECT,
    UndeliverableReply: Consequence.SETTLE,
    ReplyTooLarge: Consequence.NOTIFY,
}


def consequence_of(error: BaseException) -> Consequence:
    """What the error means for the message it happened to (see the table above)."""
    for kind, consequence in _CONSEQUENCES.items():
        if isinstance(error, kind):
            return consequence
    return Consequence.DEFER
