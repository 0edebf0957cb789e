"""A channel's budget of shipment ids a day (``max_shipments_per_day``, issue 17).

The S10 serial range is shared by every channel and never reused, so no channel may draw on it
without bound, whoever sends its messages. The budget is counted per channel and UTC day of the
message's receipt, in the state table, in the same write that takes the serial block
(``adapters.serials``); a block a retry reuses is not counted again. A file whose valid rows would
pass the budget fails alone, and its error reply names the budget and what is left of it.

One message is never issued more than one day's budget either, also when a transient failure
defers it across midnight with some of its files already numbered (``message_refusal``): so within
the defaults no message takes more than 0.1 % of the range.
"""

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class DailyBudget:
    """At most ``limit`` shipment ids for the channel ``channel_id`` on ``day`` (``YYYY-MM-DD``, UTC)."""

    channel_id: str
    day: str
    limit: int

    @classmethod
    def on(cls, channel_id: str, limit: int, received: datetime) -> "DailyBudget":
        """The budget of the UTC day on which the message was received."""
        return cls(channel_id, received.astimezone(UTC).date().isoformat(), limit)

    def refusal(self, count: int, issued: int) -> str:
        """Why a file needing ``count`` ids is refused when ``issued`` were issued today already."""
        left = max(self.limit - issued, 0)
        return (
            f"this file needs {count} shipment ids, but channel {self.channel_id} may be issued at most "
            f"{self.limit} a day (max_shipments_per_day) and has {left} left today ({self.day}, UTC). "
            "No shipment id was issued for it: send it again tomorrow, or in smaller files, or ask the "
            "LetterShop operator to raise the budget"
        )

    def message_refusal(self, count: int, issued: int) -> str:
        """Why a file needing ``count`` ids is refused when its message was issued ``issued`` already."""
        left = max(self.limit - issued, 0)
        return (
            f"this file needs {count} shipment ids, but one message may be issued at most {self.limit} "
            f"(max_shipments_per_day, the budget of channel {self.channel_id} for a day) and this one was "
            f"issued {issued} for its other files: {left} left for it. No shipment id was issued for it: "
            "send it again in another message"
        )
