"""What the poll does with a recognised message from an allowed sender, for the robustness suites
(the real-world corpus and the generated MIME): rejected with a reason, or parsed."""

from domain.attachments import ParsedMessage, parse_message
from domain.errors import RejectedMessage
from domain.inbound import parse_headers, rejection_reason
from domain.senders import sender_address

PATTERNS = ["*.csv", "*.txt"]


def outcome(raw: bytes) -> tuple[str, str | ParsedMessage]:
    """``("rejected", reason)`` or ``("parsed", ParsedMessage)``; anything else escaping is a bug."""
    headers = parse_headers(raw)
    try:
        allowed = [sender_address(headers.get_all("From"))]
    except RejectedMessage:
        allowed = []
    _, reason = rejection_reason(
        headers, allowed_senders=allowed, require_authenticated_sender=False, trusted_authserv_ids=[]
    )
    if reason is not None:
        return "rejected", reason
    try:
        return "parsed", parse_message(raw, PATTERNS)
    except RejectedMessage as exc:
        return "rejected", str(exc)
