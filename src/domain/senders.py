"""Who sent a message, and may they send import files (DESIGN §3 "Sender matching").

Three kinds of ``allowed_senders`` entries, all stored normalised (lower case, IDNA ASCII domain):

* ``user@example.com`` - exactly that address;
* ``example.com``      - any address of exactly that domain (not its subdomains);
* ``*.example.com``    - any address of a subdomain of example.com (not example.com itself).

Domains - of the sender and of every entry - are normalised by IDNA2008 with UTS #46 mapping,
*non-transitional* (``idna`` package): case and width are folded and the ideographic and full-width
stops are dots, but ``ß``, ``ς``, ZWJ and ZWNJ stay what they are, so ``straße.example``
(``xn--strae-oqa.example``) is never ``strasse.example``. Python's own ``"idna"`` codec (IDNA 2003)
would fold them, so it is not used.

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
from functools import lru_cache

import idna

from domain.errors import RejectedMessage

_LDH_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_IDNA_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
_ACE_PREFIX = "xn--"
_RTL_CLASSES = frozenset({"R", "AL", "AN"})
# Characters that never belong in an unquoted local part we are willing to configure or accept.
_LOCAL_PART_FORBIDDEN = re.compile(r'[\s\x00-\x1f\x7f<>()\[\]\\,;:@"*]')
_MAX_DOMAIN_LENGTH = 253
_MAX_ADDRESS_LENGTH = 254  # RFC 5321 path limit
_MAX_FROM_LENGTH = 2000
_MAX_SHOWN = 120
_LDH_PROBLEM = "may only contain letters, digits and inner hyphens in each label"
_TOO_LONG = f"is longer than {_MAX_DOMAIN_LENGTH} characters"


class InvalidDomain(ValueError):
    """A domain that is no host name. ``str()`` names the domain; ``why`` is the bare reason."""

    def __init__(self, domain: str, why: str) -> None:
        super().__init__(f"the domain {domain!r} {why}" if domain else f"the domain {why}")
        self.why = why


def _idna_problem(error: ValueError) -> str:
    """Why ``idna`` refused a name, for the operator (its messages name the offending codepoint)."""
    code = error.code if isinstance(error, idna.IDNAError) else None
    if code in {"input_too_long", "domain_too_long"}:
        return _TOO_LONG
    if code == "label_too_long":
        return "has a label longer than 63 characters in its IDNA ASCII form"
    return f"is not a valid international domain name (IDNA2008): {_cut(str(error) or 'invalid')}"


def _uts46_mapped(text: str, domain: str) -> str:
    """UTS #46 mapping, non-transitional: lower case, NFC, width folded, ``ß``/``ς``/ZWJ/ZWNJ kept.

    ``std3_rules=False`` leaves ASCII punctuation to the LDH check, which says what is wrong with it
    in the same words as for an all-ASCII domain.
    """
    try:
        return idna.uts46_remap(text, std3_rules=False, transitional=False)
    except ValueError as error:  # idna.IDNAError is a UnicodeError, a ValueError
        raise InvalidDomain(domain, _idna_problem(error)) from error


def _label_forms(label: str, domain: str) -> tuple[str, str]:
    """``(A-label, U-label)`` of one mapped label; InvalidDomain when it is not IDNA2008-valid.

    An ASCII label must be LDH; one that starts with ``xn--`` must also be a real A-label: valid
    Punycode, canonical (RFC 5891 §5.3), of a valid U-label - no fake ``xn--`` spelling slips through.
    """
    if label.isascii():
        if not _LDH_LABEL.match(label):
            raise InvalidDomain(domain, _LDH_PROBLEM)
        if not label.startswith(_ACE_PREFIX):
            return label, label
        try:
            return label, idna.ulabel(label)
        except ValueError as error:
            raise InvalidDomain(domain, _idna_problem(error)) from error
    try:
        ascii_label = idna.alabel(label).decode("ascii")
    except ValueError as error:
        raise InvalidDomain(domain, _idna_problem(error)) from error
    if not _LDH_LABEL.match(ascii_label):  # alabel checks the length; this is a second guard
        raise InvalidDomain(domain, _LDH_PROBLEM)
    return ascii_label, label


def _check_bidi_domain(unicode_labels: Sequence[str], domain: str) -> None:
    """RFC 5893: in a domain with a right-to-left label, every label must satisfy the Bidi Rule."""
    if not any(unicodedata.bidirectional(ch) in _RTL_CLASSES for label in unicode_labels for ch in label):
        return
    for label in unicode_labels:
        try:
            idna.check_bidi(label, check_ltr=True)
        except ValueError as error:
            raise InvalidDomain(domain, _idna_problem(error)) from error


def normalize_domain(domain: str) -> str:
    """``Bücher.Example.`` -> ``xn--bcher-kva.example``; raises ValueError for anything not a host name.

    IDNA2008 with UTS #46 non-transitional mapping: ``Straße.example`` -> ``xn--strae-oqa.example``
    (not ``strasse.example``); an all-ASCII domain is only lower-cased (and its ``xn--`` labels
    checked). The ValueError is an InvalidDomain naming the domain and what is wrong with it.
    """
    text = domain.strip().translate(_IDNA_DOTS)
    text = text.lower() if text.isascii() else _uts46_mapped(text, domain)
    text = text.removesuffix(".")
    if not text:
        raise InvalidDomain("", "is empty")
    ascii_labels: list[str] = []
    unicode_labels: list[str] = []
    for label in text.split("."):
        if not label:
            raise InvalidDomain(domain, "has an empty label")
        ascii_label, unicode_label = _label_forms(label, domain)
        ascii_labels.append(ascii_label)
        unicode_labels.append(unicode_label)
    _check_bidi_domain(unicode_labels, domain)
    result = ".".join(ascii_labels)
    if len(result) > _MAX_DOMAIN_LENGTH:
        raise InvalidDomain(domain, _TOO_LONG)
    return result


def _normalized_local_part(local: str) -> str:
    """NFC, lower case: the one form of a local part, in patterns and senders alike."""
    return unicodedata.normalize("NFC", local).lower()


def _normalize_local_part(local: str, original: str) -> str:
    if not local:
        raise ValueError(f"{original!r} has nothing before the '@'")
    if local == "*":
        raise ValueError(f"{original!r}: to allow a whole domain, enter just the domain ('example.com')")
    if _LOCAL_PART_FORBIDDEN.search(local):
        raise ValueError(f"{original!r} contains a character that is not allowed in an e-mail address")
    return _normalized_local_part(local)


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


def _cut(value: str) -> str:
    """A text cut to a readable length."""
    return value if len(value) <= _MAX_SHOWN else value[:_MAX_SHOWN] + "..."


def _shown(value: str) -> str:
    """A header value quoted for a reason text, cut to a readable length."""
    return repr(_cut(value))


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
    except InvalidDomain as exc:
        raise RejectedMessage(
            f"the From address has an invalid domain: {_shown(value)} (it {_cut(exc.why)})"
        ) from exc
    result = f"{_normalized_local_part(local)}@{normalized_domain}"
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


def _matching_form(address: str) -> tuple[str, str] | None:
    """``(address, domain)`` of an address normalised like ``sender_address`` does; None if none."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local:
        return None
    try:
        normalized_domain = normalize_domain(domain)
    except ValueError:
        return None
    return f"{_normalized_local_part(local)}@{normalized_domain}", normalized_domain


@lru_cache(maxsize=4096)
def _normalized_pattern(entry: str) -> str | None:
    """``normalize_sender_pattern``, or None when the entry is refused."""
    try:
        return normalize_sender_pattern(entry)
    except ValueError:
        return None


def _matching_pattern(pattern: str) -> str | None:
    """A pattern in the form it is compared in; None when it cannot match anything.

    An address pattern is normalised exactly like the sender's address (``_matching_form``), so an
    address matches itself whatever it holds; the stricter rules for configured entries are the
    channel model's business. A domain or wildcard goes through ``normalize_sender_pattern``.
    """
    if "@" in pattern:
        matching = _matching_form(pattern)
        return None if matching is None else matching[0]
    return _normalized_pattern(pattern)


def is_allowed(address: str, patterns: Sequence[str]) -> bool:
    """Whether a sender address matches one of the patterns. Empty = nobody.

    Both sides are compared in their normalised forms (``normalize_sender_pattern``, the sender's
    domain by ``normalize_domain``), so ``Straße.example`` matches ``xn--strae-oqa.example`` and never
    ``strasse.example``, whichever side was normalised already. Invalid patterns match nothing.
    """
    matching = _matching_form(address)
    if matching is None:
        return False
    address, domain = matching
    for raw_pattern in patterns:
        pattern = _matching_pattern(raw_pattern)
        if pattern is None:
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


def normalization_notes(entries: object) -> list[tuple[str, str]]:
    """``(entry as typed, normalised form)`` of the raw ``allowed_senders`` entries whose normalised
    form differs in more than case and surrounding whitespace - ``Bücher.example`` ->
    ``xn--bcher-kva.example``, ``partner.example.`` -> ``partner.example`` - for the operator's log.

    ``entries`` is the item's raw value, a list or a (DynamoDB string) set; anything else, entries that
    are no strings and entries that cannot be normalised are passed over (the channel model reports
    those). A set is read in sorted order, a list in its own; each note appears once.
    """
    if isinstance(entries, (set, frozenset)):
        typed = sorted(entry for entry in entries if isinstance(entry, str))
    elif isinstance(entries, (list, tuple)):
        typed = [entry for entry in entries if isinstance(entry, str)]
    else:
        return []
    notes: dict[tuple[str, str], None] = {}
    for entry in typed:
        shown = entry.strip()
        normalized = _normalized_pattern(entry)
        if normalized is not None and normalized != shown.lower():
            notes[shown, normalized] = None
    return list(notes)
