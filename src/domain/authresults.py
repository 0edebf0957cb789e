"""``Authentication-Results`` (RFC 8601): did a server we trust see DMARC, DKIM or SPF pass?

Only the topmost header whose authserv-id is in the channel's ``trusted_authserv_ids`` counts. Our
own receiving server adds its header on top (and should strip copies carrying its id), so anything
lower down - possibly written by the sender - is ignored.

``dmarc=pass`` counts only with a ``header.from`` property whose domain is the sender's domain (both
normalised): a bare ``dmarc=pass`` does not say whose From it checked, so it vouches for nobody.
For ``dkim=pass`` and ``spf=pass``, alignment is *relaxed* and done by domain suffix, without a
public-suffix list: two domains align when they are equal or one is a subdomain of the other, and the
shorter one has at least two labels (``d=com`` never aligns with anything).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from domain.senders import normalize_domain

# The look-behind makes a match start only at the beginning of a token: linear time on hostile input.
_PROPERTY = re.compile(r'(?<![A-Za-z0-9_.\-/])([A-Za-z0-9_.\-/]++)\s*+=\s*+("(?:[^"\\]|\\.)*+"|[^\s";]++)')


@dataclass(frozen=True)
class AuthResult:
    """One ``method=result`` statement with its properties (``header.d``, ``smtp.mailfrom`` ...)."""

    method: str
    result: str
    properties: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.method}={self.result}"


@dataclass(frozen=True)
class AuthenticationResults:
    authserv_id: str
    results: tuple[AuthResult, ...]


def _strip_comments(value: str) -> str:
    """Remove ``(comments)`` (nested too) outside quoted strings."""
    out: list[str] = []
    depth = 0
    in_quotes = False
    escaped = False
    for ch in value:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(ch)
            continue
        if ch == "\\":
            escaped = True
            if depth == 0:
                out.append(ch)
        elif in_quotes:
            in_quotes = ch != '"'
            out.append(ch)
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
            out.append(" ")
        elif depth == 0:
            in_quotes = ch == '"'
            out.append(ch)
    return "".join(out)


def _split_statements(value: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    in_quotes = False
    escaped = False
    for ch in value:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            in_quotes = not in_quotes
        elif ch == ";" and not in_quotes:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return [part.strip() for part in parts]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_authentication_results(value: str) -> AuthenticationResults | None:
    """Parse one header value; None when it has no authserv-id."""
    statements = _split_statements(_strip_comments(value))
    head = statements[0].split()
    if not head:
        return None
    results: list[AuthResult] = []
    for statement in statements[1:]:
        pairs = [(key, _unquote(raw)) for key, raw in _PROPERTY.findall(statement)]
        if not pairs or not statement.lstrip().startswith(pairs[0][0]):
            continue  # "none" or an unreadable statement
        method = pairs[0][0].split("/", 1)[0].lower()
        properties = {key.lower(): item for key, item in pairs[1:]}
        results.append(AuthResult(method=method, result=pairs[0][1].lower(), properties=properties))
    return AuthenticationResults(authserv_id=_unquote(head[0]).lower(), results=tuple(results))


def _domain(value: str) -> str | None:
    """The domain of ``user@host``, ``@host`` or ``host``, normalised; None when it is not one."""
    try:
        return normalize_domain(value.rpartition("@")[2])
    except ValueError:
        return None


def aligned(one: str | None, other: str | None) -> bool:
    """Relaxed alignment by suffix: equal, or one a subdomain of the other (shorter has a dot)."""
    if not one or not other:
        return False
    if one == other:
        return True
    shorter, longer = sorted((one, other), key=len)
    return "." in shorter and longer.endswith("." + shorter)


def _passes(result: AuthResult, sender_domain: str) -> bool:
    if result.result != "pass":
        return False
    if result.method == "dmarc":
        # DMARC's verdict is about one From domain: without header.from it vouches for nobody.
        header_from = result.properties.get("header.from")
        return header_from is not None and _domain(header_from) == sender_domain
    if result.method == "dkim":
        signer = result.properties.get("header.d") or result.properties.get("header.i")
        return signer is not None and aligned(_domain(signer), sender_domain)
    if result.method == "spf":
        mailfrom = result.properties.get("smtp.mailfrom")
        return mailfrom is not None and aligned(_domain(mailfrom), sender_domain)
    return False


def _describe(result: AuthResult, sender_domain: str) -> str:
    if result.result == "pass" and result.method == "dmarc":
        header_from = result.properties.get("header.from")
        if header_from is None:
            return f"{result} (no header.from, so not for {sender_domain})"
        return f"{result} (header.from={header_from} is not {sender_domain})"
    if result.result == "pass" and result.method in {"dkim", "spf"}:
        key = {"dkim": "header.d", "spf": "smtp.mailfrom"}[result.method]
        return f"{result} ({key}={result.properties.get(key, '?')} not aligned with {sender_domain})"
    return str(result)


def authentication_failure(
    values: Sequence[str], *, trusted_authserv_ids: Sequence[str], sender_domain: str
) -> str | None:
    """None when the topmost trusted ``Authentication-Results`` shows an aligned pass, else why not.

    ``values`` are the header values top first.
    """
    trusted = {item.strip().lower() for item in trusted_authserv_ids if item.strip()}
    try:
        domain = normalize_domain(sender_domain)
    except ValueError:
        domain = sender_domain.strip().lower()
    for value in values:
        parsed = parse_authentication_results(value)
        if parsed is None or parsed.authserv_id not in trusted:
            continue
        relevant = [result for result in parsed.results if result.method in {"dmarc", "dkim", "spf"}]
        if any(_passes(result, domain) for result in relevant):
            return None
        if not relevant:
            return f"not authenticated: {parsed.authserv_id} reports no dmarc, dkim or spf result"
        details = ", ".join(_describe(result, domain) for result in relevant)
        return f"not authenticated: {details} (by {parsed.authserv_id})"
    return "no Authentication-Results from a trusted server"
