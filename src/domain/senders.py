"""Who sent a message, and may they send import files (DESIGN §3 "Sender matching").

Three kinds of ``allowed_senders`` entries, all stored normalised (lower case, IDNA ASCII domain):

* ``user@example.com`` - exactly that address;
* ``example.com``      - any address of exactly that domain (not its subdomains);
* ``*.example.com``    - any address of a subdomain of example.com (not example.com itself).

The sender is the single address in the single ``From`` header. Everything that is not exactly one
plain address is refused, because a second parser (a mail client, a person) might read it differently.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from email import message_from_string, policy
from email.errors import HeaderParseError
from email.message import EmailMessage
from email.utils import getaddresses

from domain.errors import RejectedMessage

_LDH_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_IDNA_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
# Characters that never belong in an unquoted local part we are willing to configure or accept.
_LOCAL_PART_FORBIDDEN = re.compile(r'[\s\x00-\x1f\x7f<>()\[\]\\,;:@"*]')
_MAX_DOMAIN_LENGTH = 253
_MAX_ADDRESS_LENGTH = 254  # RFC 5321 path limit
_MAX_FROM_LENGTH = 2000
_MAX_SHOWN = 120


def normalize_domain(domain: str) -> str:
    """``Bücher.Example.`` -> ``xn--bcher-kva.example``; raises ValueError for anything not a host name."""
    text = unicodedata.normalize("NFC", domain.strip()).translate(_IDNA_DOTS)
    text = text.removesuffix(".")
    if not text:
        raise ValueError("the domain is empty")
    labels = []
    for label in text.split("."):
        if not label:
            raise ValueError(f"the domain {domain!r} has an empty label")
        if label.isascii():
            ascii_label = label.lower()
        else:
            try:
                ascii_label = label.encode("idna").decode("ascii").lower()
            except UnicodeError as exc:
                raise ValueError(f"the domain {domain!r} is not a valid international domain name") from exc
        if not _LDH_LABEL.match(ascii_label):
            raise ValueError(
                f"the domain {domain!r} may only contain letters, digits and inner hyphens in each label"
            )
        labels.append(ascii_label)
    result = ".".join(labels)
    if len(result) > _MAX_DOMAIN_LENGTH:
        raise ValueError(f"the domain {domain!r} is longer than {_MAX_DOMAIN_LENGTH} characters")
    return result


def _normalize_local_part(local: str, original: str) -> str:
    if not local:
        raise ValueError(f"{original!r} has nothing before the '@'")
    if local == "*":
        raise ValueError(f"{original!r}: to allow a whole domain, enter just the domain ('example.com')")
    if _LOCAL_PART_FORBIDDEN.search(local):
        raise ValueError(f"{original!r} contains a character that is not allowed in an e-mail address")
    return unicodedata.normalize("NFC", local).lower()


def normalize_sender_pattern(entry: str) -> str:
    """Normalise one ``allowed_senders`` entry or raise ValueError saying what is wrong with it.

    Surrounding whitespace is forgiven; anything else unusual (inner spaces, wildcards other than a
    leading ``*.``, a bare top-level domain) is refused rather than guessed.
    """
    text = entry.strip()
    if not text:
        raise ValueError("an allowed sender must not be empty")
    if any(ch.isspace() for ch in text):
        raise ValueError(f"{entry!r} contains a space")
    if "@" in text:
        local, _, domain = text.rpartition("@")
        if "@" in local:
            raise ValueError(f"{entry!r} contains more than one '@'")
        if not domain:
            raise ValueError(f"{entry!r} has no domain after the '@'")
        normalized_local = _normalize_local_part(local, entry)
        try:
            normalized_domain = normalize_domain(domain)
        except ValueError as exc:
            raise ValueError(f"{entry!r}: {exc}") from exc
        if "." not in normalized_domain:
            raise ValueError(f"{entry!r}: the domain must contain a dot")
        return f"{normalized_local}@{normalized_domain}"
    wildcard = text.startswith("*.")
    base = text[2:] if wildcard else text
    if "*" in base:
        raise ValueError(f"{entry!r}: '*' is only allowed as '*.' at the start, e.g. '*.example.com'")
    try:
        normalized = normalize_domain(base)
    except ValueError as exc:
        raise ValueError(f"{entry!r}: {exc}") from exc
    if "." not in normalized:
        if wildcard:
            raise ValueError(f"{entry!r}: a wildcard for a whole top-level domain is not allowed")
        raise ValueError(f"{entry!r} is neither an e-mail address nor a domain with a dot")
    return f"*.{normalized}" if wildcard else normalized


def _has_group_syntax(value: str) -> bool:
    """True when a ':' appears outside quoted strings, comments and angle brackets (``group: a@b;``)."""
    in_quotes = False
    escaped = False
    comment_depth = 0
    in_angle = False
    for ch in value:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif in_quotes:
            in_quotes = ch != '"'
        elif ch == '"' and comment_depth == 0:
            in_quotes = True
        elif ch == "(":
            comment_depth += 1
        elif ch == ")" and comment_depth:
            comment_depth -= 1
        elif comment_depth:
            continue
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch in ":;" and not in_angle:
            return True
    return False


def _second_opinion(value: str) -> list[str] | None:
    """The addresses email.headerregistry sees (those it could read at all), or None when it fails."""
    try:
        header = policy.default.header_factory("from", value)
        specs = [address.addr_spec.lower() for address in header.addresses]
        return [spec for spec in specs if "@" in spec and spec != "<>"]
    except (HeaderParseError, ValueError, IndexError, TypeError, AttributeError):
        return None


def _shown(value: str) -> str:
    """A header value quoted for a reason text, cut to a readable length."""
    return repr(value if len(value) <= _MAX_SHOWN else value[:_MAX_SHOWN] + "...")


def _normalized_address(address: str, value: str) -> str:
    """Check the address getaddresses found in the header ``value``; lower case, IDNA domain."""
    if not address:
        raise RejectedMessage(f"the From header cannot be parsed: {_shown(value)}")
    if any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in address):
        raise RejectedMessage(f"the From address contains spaces or control characters: {_shown(value)}")
    local, at, domain = address.rpartition("@")
    if not at or not local:
        raise RejectedMessage(f"the From address has no '@': {_shown(value)}")
    if not domain:
        raise RejectedMessage(f"the From address has no domain: {_shown(value)}")
    try:
        normalized_domain = normalize_domain(domain)
    except ValueError as exc:
        raise RejectedMessage(f"the From address has an invalid domain: {_shown(value)}") from exc
    result = f"{unicodedata.normalize('NFC', local).lower()}@{normalized_domain}"
    if len(result) > _MAX_ADDRESS_LENGTH:
        raise RejectedMessage(f"the From address is longer than {_MAX_ADDRESS_LENGTH} characters")
    return result


def sender_address(from_values: Sequence[str]) -> str:
    """The one sender address of a message: lower case, domain in IDNA ASCII form.

    ``from_values`` are all raw ``From`` header values. Raises RejectedMessage(reason) unless there is
    exactly one header holding exactly one plain address. The display name never counts:
    ``"boss@partner.ch" <attacker@evil.com>`` is attacker@evil.com.
    """
    if not from_values:
        raise RejectedMessage("message has no From header")
    if len(from_values) > 1:
        raise RejectedMessage(f"message has {len(from_values)} From headers")
    value = " ".join(from_values[0].split())
    if not value:
        raise RejectedMessage("the From header is empty")
    if len(value) > _MAX_FROM_LENGTH:
        raise RejectedMessage(f"the From header is longer than {_MAX_FROM_LENGTH} characters")
    if _has_group_syntax(value):
        raise RejectedMessage(f"the From header is a group, not one address: {_shown(value)}")
    addresses = getaddresses([value], strict=True)
    if len(addresses) != 1:
        raise RejectedMessage(f"the From header holds {len(addresses)} addresses: {_shown(value)}")
    address = addresses[0][1]
    result = _normalized_address(address, value)
    second = _second_opinion(value)
    if second and (len(second) != 1 or second[0] != address.lower()):
        raise RejectedMessage(f"the From header is ambiguous: {_shown(value)}")
    return result


def reply_address_problem(address: str, *, ascii_only: bool) -> str | None:
    """Why a reply cannot be addressed to ``address`` exactly as screened, or None when it can.

    The address is written into a ``To`` header the way a reply is serialised (RFC 6532 UTF-8 for a
    non-ASCII address) and parsed again: anything that does not come back as the very same single
    address (lost quotes, a group, a line break, an over-long or folded local part) is refused, so no
    reply can ever reach another mailbox than the one that was screened. ``ascii_only``: the reply's
    transport cannot carry a non-ASCII address at all (Amazon SES has no SMTPUTF8).
    """
    utf8 = not address.isascii()
    if utf8 and ascii_only:
        return f"the sender address {_shown(address)} is not ASCII, and the reply transport needs ASCII"
    header = EmailMessage(policy=policy.SMTPUTF8 if utf8 else policy.SMTP)
    try:
        header["To"] = address
        written = header.as_bytes()
        parsed = message_from_string(written.decode("utf-8"), policy=policy.default)["To"]
        again = [item.addr_spec for item in parsed.addresses]
    except (HeaderParseError, ValueError, IndexError, TypeError, AttributeError, UnicodeError) as error:
        return f"the sender address {_shown(address)} cannot be written into a reply: {error}"
    if again != [address]:
        return f"the sender address {_shown(address)} does not survive being written into a reply header"
    return None


def is_allowed(address: str, patterns: Sequence[str]) -> bool:
    """Whether a normalised sender address matches one of the normalised patterns. Empty = nobody."""
    address = address.strip().lower()
    _, at, domain = address.rpartition("@")
    if not at or not domain:
        return False
    for raw_pattern in patterns:
        pattern = raw_pattern.strip().lower()
        if not pattern:
            continue
        if "@" in pattern:
            if address == pattern:
                return True
        elif pattern.startswith("*."):
            if domain.endswith(pattern[1:]) and domain != pattern[2:]:
                return True
        elif domain == pattern:
            return True
    return False
