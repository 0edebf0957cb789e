"""Decisions on an inbound message from its headers alone (DESIGN §1 steps 3-4, §3, §6).

The poll service reads the header block with ``TOP n 0`` and asks, in this order:

1. ``is_recognized``     - is it a LetterShop message at all? (exclusive account, or keyword in subject)
2. ``rejection_reason``  - automatic message? one parsable From? allowed sender? authenticated?

Nothing here raises on broken mail; the answers are values (a reason string or None).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence

from domain.authresults import authentication_failure
from domain.errors import RejectedMessage
from domain.headers import Headers, clean_text, decode_words, parse_headers
from domain.senders import is_allowed, sender_address

__all__ = [
    "Headers",
    "authentication_reason",
    "automatic_reason",
    "is_recognized",
    "parse_headers",
    "rejection_reason",
]

_MAILER_DAEMON = re.compile(r"(?:^|[\s<\"])mailer-daemon(?:@|>|\s|$)", re.IGNORECASE)
_BULK_PRECEDENCE = {"bulk", "junk", "list", "auto_reply"}
KEY_KEYWORD_CHARS = 64  # a longer keyword is kept in a recognition key as its digest
_AUTORESPONDER_HEADERS = ("X-Autoreply", "X-Autorespond")


def _comparable(text: str) -> str:
    """NFKC, case-folded, every whitespace run one space - for keyword matching."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def is_recognized(subject: str, *, exclusive_account: bool, keyword: str | None) -> bool:
    """Exclusive account: every message. Else: the keyword occurs in the decoded subject, any case.

    ``subject`` should be ``Headers.subject`` (already RFC 2047-decoded); encoded words left in it are
    decoded once more, so a raw header value works as well. An empty keyword recognises nothing.
    """
    if exclusive_account:
        return True
    wanted = _comparable(keyword or "")
    if not wanted:
        return False
    return wanted in _comparable(clean_text(decode_words(subject)))


def recognition_key(*, exclusive_account: bool, keyword: str | None) -> str:
    """What decides ``is_recognized``, as one string: equal keys recognise the same messages. It is
    stored with the mailbox memory, so a keyword longer than ``KEY_KEYWORD_CHARS`` is stored as its
    digest: the key stays small whatever the operator typed."""
    if exclusive_account:
        return "exclusive"
    comparable = _comparable(keyword or "")
    if len(comparable) <= KEY_KEYWORD_CHARS:
        return f"keyword:{comparable}"
    digest = hashlib.blake2b(comparable.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    return f"keyword-blake2b:{digest}"


def _without_comments(value: str) -> tuple[str, bool]:
    """``value`` with its RFC 5322 comments replaced by a blank - nested ``(a (b))``, quoted pairs
    ``(a \\) b)``, not inside a quoted string - and whether every comment was closed (an unclosed
    one runs to the end of the value)."""
    out: list[str] = []
    depth = 0
    quoted = escaped = False
    for ch in value:
        if escaped:
            escaped = False
            if not depth:
                out.append(ch)
        elif ch == "\\" and (depth or quoted):
            escaped = True
            if not depth:
                out.append(ch)
        elif depth:
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if not depth:
                out.append(" ")
        elif ch == '"':
            quoted = not quoted
            out.append(ch)
        elif ch == "(" and not quoted:
            depth = 1
        else:
            out.append(ch)
    return "".join(out), depth == 0


def _token(value: str) -> str:
    """First token of a structured value, comments removed: ``auto-replied; x=y (c)`` -> ``auto-replied``."""
    return _without_comments(value)[0].split(";", 1)[0].strip().lower()


def _is_empty_path(value: str) -> bool:
    """``<>`` as RFC 5321/5322 write the null return path: blanks and comments around and inside the
    angle brackets are allowed (``<> (bounce)``, ``< >``, ``(x) <(y)>``)."""
    return "".join(_without_comments(value)[0].split()) == "<>"


def _bounce(headers: Headers) -> str | None:
    content_types = [value.split(";", 1)[0].strip().lower() for value in headers.get_all("Content-Type")]
    if "multipart/report" in content_types:
        return "bounce (multipart/report)"
    if any(_MAILER_DAEMON.search(value) for value in headers.get_all("From")):
        return "bounce (From: MAILER-DAEMON)"
    return None


def _auto_submitted(headers: Headers) -> str | None:
    for value in headers.get_all("Auto-Submitted"):
        if _token(value) != "no" or not _without_comments(value)[1]:  # "no (unclosed": in doubt, automatic
            return f"Auto-Submitted: {clean_text(value)[:80]}"
    return None


def _bulk(headers: Headers) -> str | None:
    for value in headers.get_all("Precedence"):
        if _token(value) in _BULK_PRECEDENCE:
            return f"Precedence: {_token(value)}"
    return None


def _autoresponder(headers: Headers) -> str | None:
    for name in _AUTORESPONDER_HEADERS:
        values = headers.get_all(name)
        if values:
            return f"{name}: {clean_text(values[0])[:80]}"
    return None


def _mailing_list(headers: Headers) -> str | None:
    list_ids = headers.get_all("List-Id")
    return f"mailing list (List-Id: {clean_text(list_ids[0])[:80]})" if list_ids else None


def automatic_reason(headers: Headers, *, return_path_empty: bool | None = None) -> str | None:
    """Why a message is automatic (bounce, auto-reply, bulk) and must never be answered; None if not.

    Automatic: top-level ``multipart/report``; From MAILER-DAEMON; an empty return path
    (``return_path_empty=True`` from the caller, or a ``Return-Path: <>`` header, blanks and comments
    allowed around and inside the brackets - the header is checked in any case); ``Auto-Submitted``
    with any value but ``no`` (RFC 3834); ``Precedence: bulk``, ``junk``, ``list`` or ``auto_reply``;
    an ``X-Autoreply`` or ``X-Autorespond`` header; a ``List-Id`` header (mailing list, RFC 2919).
    """
    bounce = _bounce(headers)
    if bounce is not None:
        return bounce
    if return_path_empty or any(_is_empty_path(value) for value in headers.get_all("Return-Path")):
        return "empty return path (Return-Path: <>)"
    for check in (_auto_submitted, _bulk, _autoresponder, _mailing_list):
        reason = check(headers)
        if reason is not None:
            return reason
    return None


def authentication_reason(
    headers: Headers, *, trusted_authserv_ids: Sequence[str], sender_domain: str
) -> str | None:
    """None when the topmost trusted Authentication-Results shows dmarc=pass or an aligned dkim/spf pass.

    Otherwise the reason: "no Authentication-Results from a trusted server", or the results seen
    (e.g. "not authenticated: dmarc=fail, spf=softfail (by mx.example.net)").
    """
    return authentication_failure(
        headers.get_all("Authentication-Results"),
        trusted_authserv_ids=trusted_authserv_ids,
        sender_domain=sender_domain,
    )


def rejection_reason(
    headers: Headers,
    *,
    allowed_senders: Sequence[str],
    require_authenticated_sender: bool,
    trusted_authserv_ids: Sequence[str],
) -> tuple[str | None, str | None]:
    """``(sender address or None, reason or None)`` for a recognised message; reason None = accept.

    Order: automatic message, From parsing, allowed addresses and domains, authentication (when
    required). The sender is returned whenever it could be parsed, also with a reason (for the log).
    """
    try:
        sender: str | None = sender_address(headers.get_all("From"))
        from_problem: str | None = None
    except RejectedMessage as exc:
        sender, from_problem = None, str(exc)
    automatic = automatic_reason(headers)
    if automatic is not None:
        return sender, automatic
    if sender is None:
        return None, from_problem or "the From header cannot be parsed"
    if not is_allowed(sender, allowed_senders):
        return sender, f"sender {sender} is not in the allowed addresses and domains"
    if require_authenticated_sender:
        reason = authentication_reason(
            headers,
            trusted_authserv_ids=trusted_authserv_ids,
            sender_domain=sender.rpartition("@")[2],
        )
        if reason is not None:
            return sender, reason
    return sender, None
