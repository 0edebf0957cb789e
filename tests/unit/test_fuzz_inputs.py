"""Property-based fuzzing of the inputs a partner controls (issue 10, point 7).

Three families of generated, often hostile input, each checked against the invariants of DESIGN §3,
§5 and §6. Every generator knows what it built, so the properties check answers, not just "no crash":

1. ``From`` and ``Authentication-Results`` headers (``sender_address``, ``authentication_failure``,
   ``authentication_reason``, ``rejection_reason``): groups, quotes, comments, encoded words, CR/LF,
   Unicode/IDNA domains, several addresses, forged lower AR headers, missing ``header.from``,
   trusted and untrusted authserv-ids. Only the documented values and ``RejectedMessage`` come out; a
   sender is lower case with an IDNA ASCII domain and is never an address taken from a display name
   or a comment; a message is authenticated exactly when the topmost trusted AR header shows a pass
   aligned with the sender (an independent model of §3 decides, from what the generator planted).
2. Import CSVs (``process_import`` with the recording ``FakeSerials``): random headers, delimiters,
   encodings (UTF-8, BOM, Windows-1252), line ends, quotes (closed and unclosed), formula-like cells,
   long cells, blank lines, duplicate references, row caps. Only ``InvalidImportFile`` escapes; an
   accepted file has one export row per data row, in order, with the status the generator predicts;
   one ``allocate`` call at most, exactly as many serials as accepted rows; every shipment id a
   valid, unique S10 id; no export cell starts like a formula; the export header in the import's
   delimiter, encoding and BOM.
3. The poll service with the recording fakes: whatever the ``From`` header of a message at an
   allowed domain holds, every reply (also the one re-sent after a ``TransientError``) goes to
   ``sender_address(From)`` - envelope and ``To`` header alike - or there is no reply and the
   message is quarantined.

``make test`` runs the bounded profile (tests/conftest.py); ``make fuzz`` runs many more examples.
"""

from __future__ import annotations

import base64
import codecs
import csv
import io
import string
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from email import message_from_string, policy
from email.headerregistry import AddressHeader
from typing import Literal

import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from devstack.samples import partner_mail, with_sender
from domain.authresults import authentication_failure
from domain.errors import PermanentError, RejectedMessage, TransientError
from domain.inbound import authentication_reason, automatic_reason, parse_headers, rejection_reason
from domain.senders import normalize_domain, reply_address_problem, sender_address
from domain.shipments import EXPORT_COLUMNS, Status, is_valid_s10, process_import
from domain.shipments.partner_text import FORMULA_STARTS
from domain.shipments.s10 import SERIAL_MAX, SERIAL_MIN
from tests.unit.fakes import FakeSerials, World, make_channel
from tests.unit.test_shipments_support import COLUMNS

type Draw = st.DrawFn

# pytest-timeout's 120 s is per test, and a Hypothesis test is one test: `make fuzz` needs more.
scaled_timeout = pytest.mark.timeout(max(120, settings().max_examples // 20))

EVIL = "ceo@evil.example"
TRUSTED_ID = "mx.lettershop.example"
NAMES = string.ascii_letters + " "

# --- 1. From headers ------------------------------------------------------------------------------------

# (as written in the header, normalised form)
PARTNER_DOMAINS = [
    ("partner.example", "partner.example"),
    ("PARTNER.Example", "partner.example"),
    ("partner.example.", "partner.example"),
    ("mail.partner.example", "mail.partner.example"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("BÜCHER.example", "xn--bcher-kva.example"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
]
OTHER_DOMAINS = [
    ("straße.example", "xn--strae-oqa.example"),
    ("strasse.example", "strasse.example"),
    ("\uff50\uff41\uff52\uff54\uff4e\uff45\uff52\u3002example", "partner.example"),  # full width
    ("δοκιμή.example", "xn--jxalpdlp.example"),
    ("evil.example", "evil.example"),
]

ascii_locals = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_+-]{0,12}(\.[A-Za-z0-9_+-]{1,6})?", fullmatch=True)
unicode_locals = st.sampled_from(["jörg", "JÖRG", "jo\u0308rg", "δοκιμή", "用户", "Ünal.Çelik", "straße"])
local_parts = st.one_of(ascii_locals, ascii_locals, ascii_locals, unicode_locals).filter(
    lambda local: "mailer-daemon" not in local.lower()
)


def _q(text: str) -> str:
    """RFC 2047 Q encoding of every byte that is not a letter or a digit."""
    return "".join(
        chr(byte) if chr(byte).isalnum() and byte < 128 else f"={byte:02X}" for byte in text.encode("utf-8")
    )


def _b(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


# Forms that hold exactly one plain address {a}: sender_address must answer it.
ACCEPTED_FORMS = [
    "{a}",
    "<{a}>",
    "{name} <{a}>",
    '"Doe, {name}" <{a}>',
    f'"{EVIL}" <{{a}}>',
    f'"<{EVIL}>" <{{a}}>',
    "=?utf-8?Q?J=C3=B6rg?= <{a}>",
    f"=?utf-8?Q?{_q(EVIL)}?= <{{a}}>",
    f"=?utf-8?B?{_b(EVIL + ', x@evil.example')}?= <{{a}}>",
    "{a} (Jörg)",
    f"{{a}} ({EVIL})",
    "Jörg Müller <{a}>",
    '"Jörg \\"JM\\" Müller" <{a}>',
    "{name}\r\n <{a}>",
    "{name}\r\n\t<{a}>\r\n (folded)",
    "(comment) {a}",
    "{name} (c) <{a}> (c2)",
]
# Forms that are not exactly one address: sender_address must refuse them.
REFUSED_FORMS = [
    "G: {a};",
    "undisclosed-recipients:;",
    f"G: {{a}}, {EVIL};",
    f"{{a}}, {EVIL}",
    f"{EVIL}, {{a}}",
    f"{{name}} <{{a}}>, {EVIL}",
    "<{a}>, <{a}>",
    "{a};",
    ":{a}",
    "",
    " \r\n ",
    "<>",
    "{name} <>",
    "{local}",
    '"{local} x"@{domain}',
    "x" * 2100 + "@{domain}",
]
# Broken or ambiguous forms: refused, or answered with the planted address {a}, never anything else.
AMBIGUOUS_FORMS = [
    '"unclosed <{a}>',
    "<{a}",
    "{a} (unclosed",
    "{name} {a}",
    f"{EVIL} <{{a}}>",
    f"<{{a}}> {EVIL}",
    f"{{local}}(@{EVIL})@{{domain}}",
    "<@route.example:{a}>",
    f"=?utf-8?Q?x=0D=0AFrom:_{_q(EVIL)}?= <{{a}}>",
    f"=?utf-8?Q?{_q(EVIL)}=0D=0ABcc:_{_q(EVIL)}?= <{{a}}>",
    f"=?utf-8?B?{_b(EVIL + chr(13) + chr(10) + 'To: x@evil.example')}?= <{{a}}>",
    "{a}\x00",
    "\x07{name} <{a}>",
    "{name} <{a}>\x7f",
    '"{name}\r\n" <{a}>',
    "{name} <{a}> <{a}>",
]
# The address in angle brackets counts, never the display name: answered with EVIL's, or refused.
SPOOF_FORMS = [f'"{{a}}" <{EVIL}>', f"=?utf-8?Q?{{a_q}}?= <{EVIL}>", f"{EVIL} ({{a}})"]


@dataclass(frozen=True)
class FromCase:
    """Raw ``From`` values and what ``sender_address`` may answer.

    ``answers``: None - any well-formed answer (random text); empty - it must refuse;
    otherwise the answer, if any, is one of these; ``must_accept``: it must answer, not refuse.
    """

    values: tuple[str, ...]
    answers: frozenset[str] | None
    must_accept: bool = False
    kind: str = ""


def _expected(local: str, normalized_domain: str) -> str:
    return f"{unicodedata.normalize('NFC', local).lower()}@{normalized_domain}"


@st.composite
def from_cases(draw: Draw, domains: Sequence[tuple[str, str]] = PARTNER_DOMAINS + OTHER_DOMAINS) -> FromCase:
    local = draw(local_parts)
    domain, normalized = draw(st.sampled_from(domains))
    address = f"{local}@{domain}"
    expected = _expected(local, normalized)
    fields = {
        "a": address,
        "a_q": _q(address),
        "local": local,
        "domain": domain,
        "name": draw(st.text(NAMES, min_size=1, max_size=15).filter(str.strip)),
    }
    kind = draw(st.sampled_from(["accepted"] * 4 + ["refused", "ambiguous", "spoof", "twice", "random"]))
    if kind == "accepted":
        form = draw(st.sampled_from(ACCEPTED_FORMS))
        event(f"From accepted form {form!r}")
        # A trailing dot (an FQDN) is obsolete syntax: a second parser may read it differently.
        must_accept = not domain.endswith(".")
        return FromCase((form.format(**fields),), frozenset({expected}), must_accept=must_accept, kind=form)
    if kind == "refused":
        form = draw(st.sampled_from(REFUSED_FORMS))
        return FromCase((form.format(**fields),), frozenset(), kind=form)
    if kind == "ambiguous":
        form = draw(st.sampled_from(AMBIGUOUS_FORMS))
        return FromCase((form.format(**fields),), frozenset({expected}), kind=form)
    if kind == "spoof":
        form = draw(st.sampled_from(SPOOF_FORMS))
        return FromCase((form.format(**fields),), frozenset({EVIL}), kind=form)
    if kind == "twice":
        other = draw(st.sampled_from([address, f"<{address}>", EVIL]))
        return FromCase((address, other), frozenset(), kind="two From headers")
    garbage = draw(st.text(max_size=60))
    return FromCase(
        (draw(st.sampled_from([garbage, f"{garbage} <{address}>", f"{address} {garbage}"])),), None
    )


def check_sender(answer: str) -> None:
    """What every answer of sender_address looks like: one lower-case address, IDNA ASCII domain."""
    assert isinstance(answer, str)
    assert answer == answer.lower()
    local, at, domain = answer.rpartition("@")
    assert at
    assert local
    assert domain
    assert domain.isascii()
    assert normalize_domain(domain) == domain
    assert not any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in answer)
    assert len(answer) <= 254


def screened(values: Sequence[str]) -> str | None:
    """sender_address's answer, or None when it refused (with a reason)."""
    try:
        answer = sender_address(values)
    except RejectedMessage as exc:
        reason = str(exc)
    else:
        check_sender(answer)
        return answer
    assert reason
    return None


@pytest.mark.property
@scaled_timeout
@given(from_cases())
def test_given_a_hostile_from_header_when_screened_then_one_plain_lower_case_address_or_rejected(
    case: FromCase,
) -> None:
    answer = screened(case.values)
    if case.must_accept:
        assert answer is not None, case
    if case.answers is not None and answer is not None:
        assert answer in case.answers, case
    event("accepted" if answer else "refused")

    # The same header through the header block: rejection_reason answers with values, never raises.
    block = b"".join(b"From: " + value.encode("utf-8") + b"\r\n" for value in case.values)
    headers = parse_headers(block + b"Subject: LetterShop import\r\n\r\nbody")
    sender, reason = rejection_reason(
        headers,
        allowed_senders=["partner.example", "*.partner.example"],
        require_authenticated_sender=False,
        trusted_authserv_ids=[],
    )
    assert sender == screened(headers.get_all("From"))
    assert reason is None or isinstance(reason, str)
    if automatic_reason(headers) is None:
        allowed = sender is not None and sender.rpartition("@")[2] in {
            "partner.example",
            "mail.partner.example",
        }
        assert (reason is None) == allowed, (case, sender, reason)


# --- 1. Authentication-Results ---------------------------------------------------------------------------

# Sender domains (as the sender's address has it, normalised) and property domains around them.
SENDER_DOMAINS = ["partner.example", "mail.partner.example", "xn--bcher-kva.example", "xn--strae-oqa.example"]
UNICODE_FORMS = {"xn--bcher-kva.example": "Bücher.example", "xn--strae-oqa.example": "straße.example"}
TRUSTED_CONFIGS = [
    [TRUSTED_ID],
    [" MX.LetterShop.Example ", "mx2.lettershop.example"],
    ["mx2.lettershop.example", TRUSTED_ID],
    [],
    ["", "  "],
]
AUTHSERV_IDS = [
    TRUSTED_ID,
    "MX.LETTERSHOP.EXAMPLE",
    f'"{TRUSTED_ID}"',
    "mx2.lettershop.example",
    "mx.lettershop.example.evil.example",
    "lettershop.example",
    "mx.partner.example",
    "evil.example",
]
COMMENTS = [
    "(p=none)",
    "(1024-bit key; unprotected)",
    "(dmarc=pass header.from=partner.example)",
    "(nested (dkim=pass header.d=partner.example) done)",
    f"({TRUSTED_ID}; spf=pass smtp.mailfrom=partner.example)",
]
BLANKS = [" ", "  ", "\t", "\r\n ", "\r\n\t"]
METHODS = ["dmarc", "dkim", "spf", "DMARC", "Dkim", "SPF", "arc", "auth", "iprev", "dkim/1"]
RESULTS = ["pass", "pass", "PASS", "Pass", "fail", "none", "softfail", "neutral", "temperror", "policy"]
PROPERTY_KEYS = {
    "dmarc": ["header.from", "Header.From", "policy.dmarc"],
    "dkim": ["header.d", "header.i", "Header.D", "header.s", "header.b"],
    "spf": ["smtp.mailfrom", "Smtp.MailFrom", "smtp.helo"],
}
EXTRA_KEYS = ["header.from", "header.d", "smtp.mailfrom", "reason"]


def _domain_variants(sender_domain: str) -> list[str]:
    labels = sender_domain.split(".")
    variants = [
        sender_domain,
        sender_domain.upper(),
        sender_domain + ".",
        "mx." + sender_domain,
        ".".join(labels[1:]),  # the parent ("example" for a two-label domain: aligns with nothing)
        "x" + sender_domain,
        sender_domain + ".evil.example",
        "evil.example",
        "com",
        "strasse.example",
        "partner.example",
        "bad_domain!.example",
        "",
    ]
    if sender_domain in UNICODE_FORMS:
        variants.append(UNICODE_FORMS[sender_domain])
    return variants


@dataclass(frozen=True)
class Statement:
    method: str  # as written
    result: str  # as written
    properties: tuple[tuple[str, str], ...]  # (key as written, value unquoted)

    def normalized(self) -> tuple[str, str, dict[str, str]]:
        return (
            self.method.split("/", 1)[0].lower(),
            self.result.lower(),
            {key.lower(): value for key, value in self.properties},
        )


@dataclass(frozen=True)
class ArHeader:
    authserv_id: str  # as written (maybe quoted)
    statements: tuple[Statement, ...]
    text: str  # the header value as written

    @property
    def bare_id(self) -> str:
        return self.authserv_id.strip('"').lower()


def _model_domain(value: str) -> str | None:
    try:
        return normalize_domain(value.rpartition("@")[2])
    except ValueError:
        return None


def _model_aligned(one: str | None, other: str) -> bool:
    if one is None:
        return False
    if one == other:
        return True
    shorter, longer = sorted((one, other), key=len)
    return "." in shorter and longer.endswith("." + shorter)


def model_passes(statement: Statement, sender_domain: str) -> bool:
    """DESIGN §3 on one statement: an aligned pass (dmarc: header.from is the sender's domain)."""
    method, result, properties = statement.normalized()
    if result != "pass":
        return False
    if method == "dmarc":
        return "header.from" in properties and _model_domain(properties["header.from"]) == sender_domain
    if method == "dkim":
        signer = properties.get("header.d") or properties.get("header.i")
        return signer is not None and _model_aligned(_model_domain(signer), sender_domain)
    if method == "spf":
        return "smtp.mailfrom" in properties and _model_aligned(
            _model_domain(properties["smtp.mailfrom"]), sender_domain
        )
    return False


def model_authenticated(headers: Sequence[ArHeader], trusted: Sequence[str], sender_domain: str) -> bool:
    """Only the topmost header of a trusted authserv-id counts; forged lower ones never do."""
    trusted_ids = {item.strip().lower() for item in trusted if item.strip()}
    for header in headers:
        if header.bare_id in trusted_ids:
            return any(model_passes(statement, sender_domain) for statement in header.statements)
    return False


@st.composite
def statements(draw: Draw, sender_domain: str) -> tuple[Statement, str]:
    if draw(st.integers(0, 3)) == 0:  # a clean aligned pass, as our own server writes it
        method = draw(st.sampled_from(["dmarc", "dkim", "spf"]))
        key = {"dmarc": "header.from", "dkim": "header.d", "spf": "smtp.mailfrom"}[method]
        value = UNICODE_FORMS.get(sender_domain, sender_domain) if draw(st.booleans()) else sender_domain
        return Statement(method, "pass", ((key, value),)), f'{method}=pass {key}="{value}"'
    method = draw(st.sampled_from(METHODS))
    result = draw(st.sampled_from(RESULTS))
    base = method.split("/", 1)[0].lower()
    keys = draw(
        st.lists(st.sampled_from(PROPERTY_KEYS.get(base, []) + EXTRA_KEYS), max_size=3, unique_by=str.lower)
    )
    properties: list[tuple[str, str]] = []
    text = method + draw(st.sampled_from(["=", " = "])) + result
    if draw(st.booleans()):
        text += " " + draw(st.sampled_from(COMMENTS))
    for key in keys:
        if key == "reason":
            value = draw(st.sampled_from([f"dmarc=pass header.from={sender_domain}", "x; y", "ok"]))
            properties.append((key, value))
            text += f' {key}="{value}"'
            continue
        domain = draw(st.sampled_from([sender_domain, *_domain_variants(sender_domain)]))
        user = draw(st.sampled_from(["", "bounce@", "@", "a.b+c@"])) if key.lower() != "header.from" else ""
        value = user + domain
        if not value:
            continue  # an empty property value is not one the header grammar allows
        properties.append((key, value))
        quoted = draw(st.booleans()) or not value.isascii()
        text += draw(st.sampled_from(BLANKS)) + f"{key}=" + (f'"{value}"' if quoted else value)
        if draw(st.integers(0, 4)) == 0:
            text += " " + draw(st.sampled_from(COMMENTS))
    return Statement(method, result, tuple(properties)), text


@st.composite
def ar_headers(draw: Draw, sender_domain: str) -> ArHeader:
    authserv_id = draw(st.sampled_from([TRUSTED_ID] * 4 + AUTHSERV_IDS))
    head = authserv_id + draw(st.sampled_from(["", " 1", " (our MX)"]))
    drawn = draw(st.lists(statements(sender_domain), max_size=4))
    parts = [head] + [text for _, text in drawn]
    if not drawn and draw(st.booleans()):
        parts.append("none")
    separators = [draw(st.sampled_from([";", "; ", ";\r\n\t", " ; "])) for _ in parts[1:]]
    text = parts[0] + "".join(sep + part for sep, part in zip(separators, parts[1:], strict=True))
    return ArHeader(authserv_id, tuple(statement for statement, _ in drawn), text)


@dataclass(frozen=True)
class AuthCase:
    sender_domain: str
    local: str
    headers: tuple[ArHeader, ...]
    trusted: tuple[str, ...]


@st.composite
def auth_cases(draw: Draw) -> AuthCase:
    sender_domain = draw(st.sampled_from(SENDER_DOMAINS))
    headers = draw(st.lists(ar_headers(sender_domain), max_size=4))
    trusted = draw(st.sampled_from([TRUSTED_CONFIGS[0], *TRUSTED_CONFIGS]))
    local = draw(st.sampled_from(["orders", "Orders", "jörg"]))
    return AuthCase(sender_domain, local, tuple(headers), tuple(trusted))


def check_auth_answer(answer: str | None, case: AuthCase) -> None:
    authenticated = model_authenticated(case.headers, case.trusted, case.sender_domain)
    event("authenticated" if authenticated else "not authenticated")
    if not authenticated and any(
        model_authenticated(case.headers[index:], case.trusted, case.sender_domain)
        for index in range(1, len(case.headers))
    ):
        event("a lower (forged) trusted pass is ignored")
    if authenticated:
        assert answer is None, (case, answer)
        return
    assert isinstance(answer, str), case
    assert answer.startswith(("no Authentication-Results from a trusted server", "not authenticated: "))
    trusted_ids = {item.strip().lower() for item in case.trusted if item.strip()}
    if not any(header.bare_id in trusted_ids for header in case.headers):
        assert answer == "no Authentication-Results from a trusted server"


@pytest.mark.property
@scaled_timeout
@given(auth_cases(), st.booleans(), st.booleans())
def test_given_hostile_authentication_results_when_checked_then_only_the_topmost_trusted_aligned_pass_counts(
    case: AuthCase, required: bool, allowed: bool
) -> None:
    # Direct: the header values as a server hands them (folding CR/LF still in them).
    values = [header.text for header in case.headers]
    direct = authentication_failure(
        values, trusted_authserv_ids=case.trusted, sender_domain=case.sender_domain
    )
    check_auth_answer(direct, case)

    # Through the header block: From, the AR headers top first, as the poll reads them.
    domain_written = UNICODE_FORMS.get(case.sender_domain, case.sender_domain)
    lines = [f"From: {case.local} <{case.local}@{domain_written}>"]
    lines += [f"Authentication-Results: {header.text}" for header in case.headers]
    lines += ["Subject: LetterShop import", "", "body"]
    headers = parse_headers("\r\n".join(lines).encode("utf-8"))
    via_headers = authentication_reason(
        headers, trusted_authserv_ids=case.trusted, sender_domain=case.sender_domain
    )
    check_auth_answer(via_headers, case)

    sender, reason = rejection_reason(
        headers,
        allowed_senders=[case.sender_domain if allowed else "other.example"],
        require_authenticated_sender=required,
        trusted_authserv_ids=case.trusted,
    )
    assert sender == _expected(case.local, case.sender_domain)
    authenticated = model_authenticated(case.headers, case.trusted, case.sender_domain)
    assert (reason is None) == (allowed and (authenticated or not required)), (case, reason)
    assert reason is None or isinstance(reason, str)


# --- 2. Import CSVs ------------------------------------------------------------------------------------

KNOWN = COLUMNS
REQUIRED = ("reference", "name", "street", "postcode", "city", "weight_g")
OPTIONAL = ("company", "house_number", "country", "product")
UNKNOWN_COLUMNS = ("notes", "Tracking", "ref2", "=cmd")
TEXT_CHARS = string.ascii_letters + string.digits + " -.'/&äöüéÉßÀ€" + "=+@"
FILENAMES = ["orders.csv", "=cmd|' /C calc'!A0.csv", "-orders.csv", "@list.txt", "liste ü.csv"]

type Tagged = tuple[str, bool]  # (cell as written, valid)


def _text(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    return st.text(TEXT_CHARS, min_size=min_size, max_size=max_size)


def _good_text(limit: int) -> st.SearchStrategy[str]:
    return st.one_of(
        _text(1, limit).filter(lambda t: t.strip() != ""),
        st.sampled_from(
            ["Zürich", '=HYPERLINK("x")', "+41 44", "Line 1\nLine 2", " padded ", "Crème\r\nBrûlée"]
        ),
    )


def _long_text(limit: int) -> st.SearchStrategy[str]:
    return st.builds(
        lambda core, extra: core + extra,
        _text(limit + 1, limit + 1).filter(lambda t: t.strip() == t and t.strip() != ""),
        _text(0, 200).map(str.rstrip).map(lambda t: t.lstrip() and t),
    )


def _tagged(good: st.SearchStrategy[str], bad: st.SearchStrategy[str]) -> st.SearchStrategy[Tagged]:
    return st.one_of(
        good.map(lambda v: (v, True)), good.map(lambda v: (v, True)), bad.map(lambda v: (v, False))
    )


REFERENCES = _tagged(
    st.one_of(
        st.from_regex(r"R-[0-9]{1,5}", fullmatch=True),
        _text(1, 35).filter(lambda t: t.strip() != "" and not t.strip().startswith(("=", "+", "-", "@"))),
        st.sampled_from(["\tR-7", "\r\nR-8", " R-9 ", "Réf-ü€"]),
    ),
    st.one_of(
        st.sampled_from(["=1+1", "+41 79", "-5", "@SUM(A1:A9)", " =x", "\t=cmd|' /C calc'!A0", "", "   "]),
        _long_text(35),
    ),
)
REQUIRED_TEXT = {
    column: _tagged(_good_text(35), st.one_of(st.sampled_from(["", "  "]), _long_text(35)))
    for column in ("name", "street", "city")
}
COMPANY = _tagged(st.one_of(st.just(""), _good_text(35)), _long_text(35))
HOUSE_NUMBER = _tagged(st.sampled_from(["", "1", "12a", " 3 ", "=1"]), _long_text(10))
PRODUCTS = _tagged(
    st.sampled_from(["", "A-POST", "b-post", " REGISTERED ", "Registered"]),
    st.sampled_from(["C-POST", "APOST", "=A-POST", "A POST"]),
)
WEIGHTS = _tagged(
    st.one_of(st.integers(1, 2000).map(str), st.sampled_from([" 250 ", "0100", "2000"])),
    st.sampled_from(["0", "2001", "1.5", "abc", "", "-5", "+5", "1e3", "١٢", "99999999999"]),
)
# (postcode, country): both cells; the pair is valid or not
PLACES = _tagged(
    st.sampled_from(
        [
            ("8001", "CH"),
            ("8001", ""),
            (" 3000 ", "ch"),
            ("9490", "LI"),
            ("1010", "AT"),
            ("10115", "DE"),
            ("75001", "FR"),
            ("00100", "IT"),
            ("SW1A 1AA", "GB"),
            ("sw1a 1aa", "gb"),
            ("K1A 0B1", "CA"),
        ]
    ).map("\x1f".join),
    st.sampled_from(
        [
            ("12", "CH"),
            ("ABCDE", "DE"),
            ("8001", "XX"),
            ("", "CH"),
            ("8001", "Switzerland"),
            ("80010", ""),
            ("12345678901", "GB"),
            ("8001", "DE"),
        ]
    ).map("\x1f".join),
)
# Without a country column the country is CH.
CH_POSTCODES = _tagged(
    st.sampled_from(["8001", " 3000 ", "9490"]), st.sampled_from(["123", "ABCD", "", "80010"])
)


type Verdict = Literal["refuse", "accept", "either"]


@dataclass(frozen=True)
class CsvCase:
    data: bytes
    filename: str
    delimiter: str
    encoding: str  # as the export must be read: "utf-8", "utf-8-sig" or "cp1252"
    max_rows: int | None
    verdict: Verdict  # must the file be refused, accepted, or is it not predicted (a quote moved)?
    statuses: tuple[bool | None, ...]  # per data row when accepted: ACCEPTED?, None: not predicted
    references: tuple[str, ...]  # per data row: the trimmed reference
    mangled: str = ""


ROW_COLUMNS = [
    *REQUIRED_TEXT.items(),
    ("company", COMPANY),
    ("house_number", HOUSE_NUMBER),
    ("product", PRODUCTS),
    ("weight_g", WEIGHTS),
]


def _data_row(draw: Draw, columns: Sequence[str], seen: set[str]) -> tuple[list[str], bool | None]:
    """One data row in the header's column order, and whether it must be ACCEPTED (None: not predicted)."""
    cells: dict[str, str] = {}
    if "country" in columns:
        place, valid = draw(PLACES)
        cells["postcode"], cells["country"] = place.split("\x1f")
    else:
        cells["postcode"], valid = draw(CH_POSTCODES)
    cells["reference"], ok = draw(REFERENCES)
    if seen and draw(st.integers(0, 4)) == 0:  # a duplicate reference, maybe with a blank
        cells["reference"] = draw(st.sampled_from(sorted(seen))) + draw(st.sampled_from(["", " "]))
        ok = True
    valid &= ok
    for column, strategy in ROW_COLUMNS:
        cells[column], ok = draw(strategy)
        valid &= ok or column not in columns
    row = [cells.get(c, "") if c in KNOWN else draw(_text(0, 40)) for c in columns]
    status: bool | None = valid
    tail = draw(st.integers(0, 6))
    if tail == 0:
        row.append(draw(st.sampled_from(["extra", "=2+2", " x "])))  # a cell beyond the header
        status = False
    elif tail == 1:
        row += ["", " "]  # blank cells beyond the header do no harm
    elif tail == 2 and len(row) > 1:
        row = row[: draw(st.integers(1, len(row) - 1))]  # missing trailing cells count as empty
        status = None
    return row, status


def _table(draw: Draw, columns: Sequence[str]) -> tuple[list[list[str]], list[bool | None], list[str]]:
    """Data rows (blank lines among them), the status of each non-blank one and its trimmed reference."""
    rows: list[list[str]] = []
    statuses: list[bool | None] = []
    references: list[str] = []
    seen: set[str] = set()
    for _ in range(draw(st.integers(0, 8))):
        if draw(st.integers(0, 5)) == 0:  # a blank line, as a spreadsheet writes it
            rows.append(draw(st.sampled_from([[], [""] * len(columns), [" "] * len(columns)])))
            continue
        row, status = _data_row(draw, columns, seen)
        if all(not cell.strip() for cell in row):
            continue
        at = columns.index("reference") if "reference" in columns else len(row)
        trimmed = row[at].strip() if at < len(row) else ""
        if trimmed in seen:
            status = False  # a later row repeating a reference is rejected, valid or not
        if trimmed:
            seen.add(trimmed)
        rows.append(row)
        statuses.append(status)
        references.append(trimmed)
    return rows, statuses, references


def _encoded(draw: Draw, text: str) -> tuple[bytes, str]:
    """The file's bytes and the encoding its export must be read in."""
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp1252"]))
    if encoding != "cp1252":
        return text.encode(encoding), encoding
    try:
        data = text.encode("cp1252")
    except UnicodeEncodeError:  # e.g. Arabic-Indic digits in weight_g: only UTF-8 can carry them
        return text.encode("utf-8"), "utf-8"
    if text.isascii():
        return data, "utf-8"  # the same bytes as UTF-8: read (and answered) as UTF-8
    # Windows-1252 bytes that happen to be UTF-8 too are read as UTF-8: other cells, not predicted.
    assume(not _is_utf8(data))
    return data, "cp1252"


def _mangled(draw: Draw, data: bytes, verdict: Verdict) -> tuple[bytes, Verdict, str]:
    """Maybe break the file: a quote that opens a cell and is never closed, or bytes that are no text."""
    mangle = draw(st.integers(0, 9))
    line_starts = [i + 1 for i in range(len(data)) if data[i : i + 1] == b"\n"]
    if mangle == 0 and line_starts:
        at = draw(st.sampled_from(line_starts))
        data = data[:at] + b'"' + data[at:]
        if b'"' in data[at + 1 :]:  # closed by a later quote: lines merge, rows are not predicted
            return data, "either", "quote closed later"
        return data, "refuse", "unclosed quote"
    if mangle == 1:
        data = draw(st.sampled_from([codecs.BOM_UTF16_LE + data, data + b"\x00", b"\xff\xfe\x00" + data]))
        return data, "refuse", "not text"
    return data, verdict, ""


@st.composite
def import_files(draw: Draw) -> CsvCase:
    delimiter = draw(st.sampled_from([";", ","]))
    terminator = draw(st.sampled_from(["\r\n", "\r\n", "\n", "\r"]))
    columns = list(REQUIRED) + draw(st.lists(st.sampled_from(OPTIONAL), unique=True))
    columns += draw(st.lists(st.sampled_from(UNKNOWN_COLUMNS), max_size=2))
    if draw(st.integers(0, 9)) == 0:
        columns.remove(draw(st.sampled_from(REQUIRED)))
    if draw(st.integers(0, 14)) == 0:
        columns.append(draw(st.sampled_from(KNOWN)))  # a repeated known column
    header_valid = all(c in columns for c in REQUIRED) and all(columns.count(c) <= 1 for c in KNOWN)
    columns = draw(st.permutations(columns))
    rows, statuses, references = _table(draw, columns)

    buffer = io.StringIO(newline="")
    quote_all = draw(st.integers(0, 2)) == 0
    writer = csv.writer(
        buffer,
        delimiter=delimiter,
        lineterminator=terminator,
        quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL,
    )
    writer.writerow(
        [draw(st.sampled_from([c, c.upper(), c.title(), f" {c} "])) if c in KNOWN else c for c in columns]
    )
    writer.writerows(rows)
    if draw(st.booleans()):
        buffer.write(terminator * draw(st.integers(1, 3)))  # blank lines at the end
    data, encoding = _encoded(draw, buffer.getvalue())

    max_rows = draw(st.one_of(st.none(), st.none(), st.integers(1, 8)))
    verdict: Verdict = "accept"
    if not header_valid or (max_rows is not None and len(statuses) > max_rows):
        verdict = "refuse"
    data, verdict, mangled = _mangled(draw, data, verdict)
    return CsvCase(
        data=data,
        filename=draw(st.sampled_from(FILENAMES)),
        delimiter=delimiter,
        encoding=encoding,
        max_rows=max_rows,
        verdict=verdict,
        statuses=tuple(statuses),
        references=tuple(references),
        mangled=mangled,
    )


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _export_records(case: CsvCase, export: bytes) -> list[list[str]]:
    if case.encoding == "utf-8-sig":
        assert export.startswith(codecs.BOM_UTF8)
    else:
        assert not export.startswith(codecs.BOM_UTF8)
    text = export.decode(case.encoding)
    records = list(csv.reader(io.StringIO(text, newline=""), delimiter=case.delimiter))
    assert records[0] == list(EXPORT_COLUMNS)
    assert text.startswith(case.delimiter.join(EXPORT_COLUMNS))
    return records[1:]


@pytest.mark.property
@scaled_timeout
@given(import_files(), st.integers(SERIAL_MIN, SERIAL_MAX - 100))
def test_given_a_hostile_import_csv_when_processed_then_rows_serials_and_export_cells_are_sound(
    case: CsvCase, first_serial: int
) -> None:
    serials = FakeSerials(next_serial=first_serial)
    refusal = ""
    try:
        processed = process_import(case.filename, case.data, serials, max_rows=case.max_rows)
    except PermanentError as exc:  # InvalidImportFile, or any other the partner is told about
        refusal = str(exc) or repr(exc)
    if refusal:
        assert serials.calls == []  # a refused file spends no serial
        assert case.verdict != "accept", (case, refusal)
        event(f"refused ({case.mangled or 'header or cap'})")
        return
    assert case.verdict != "refuse", case
    event(f"processed ({case.mangled or 'as written'})")

    rows = processed.rows
    assert processed.accepted + processed.rejected == len(rows)
    if case.verdict == "accept":  # rows out = rows in, in order, with the predicted statuses
        assert [row.reference for row in rows] == list(case.references)
        for row, status in zip(rows, case.statuses, strict=True):
            if status is not None:
                assert (row.status is Status.ACCEPTED) == status, (case, row)
    lines = [row.line for row in rows]
    assert lines == sorted(set(lines))

    # Serials: one block for the file, exactly as large as the accepted rows; valid, unique S10 ids.
    assert serials.calls == ([processed.accepted] if processed.accepted else [])
    ids = [row.shipment_id for row in rows if row.status is Status.ACCEPTED]
    assert len(set(ids)) == len(ids) == processed.accepted
    for row in rows:
        if row.status is Status.ACCEPTED:
            assert is_valid_s10(row.shipment_id), row
            assert row.product is not None
            assert row.shipment_id.startswith(row.product.service_indicator)
        else:
            assert row.shipment_id == ""

    # The export: its header in the import's delimiter and encoding, one row per data row, no formula.
    records = _export_records(case, processed.export_bytes)
    assert len(records) == len(rows)
    for record, row in zip(records, rows, strict=True):
        assert len(record) == len(EXPORT_COLUMNS)
        assert record[0] == ("" if row.reference.startswith(FORMULA_STARTS) else row.reference)
        assert record[1:3] == [row.status.value, row.shipment_id]
        for cell in record:
            assert not cell.startswith(FORMULA_STARTS), (record, case)
    for line in processed.summary().splitlines():
        assert not line.startswith(FORMULA_STARTS), line


# --- 3. No reply ever addressed elsewhere than the screened sender -------------------------------------

POLL_DOMAINS = [
    ("partner.example", "partner.example"),
    ("PARTNER.Example", "partner.example"),
    ("mail.partner.example", "mail.partner.example"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
]
SMALL_IMPORT = b"reference;name;street;postcode;city;weight_g\r\nR-1;Anna;Weg 1;8001;Bern;80\r\n"
RAW_MAIL = partner_mail(attachments=[("orders.csv", SMALL_IMPORT)])
# Headers a hostile From value smuggles in after itself (raw CRLF, no blank: a header line of its own).
INJECTIONS = ["", "", f"\r\nReply-To: {EVIL}", f"\r\nTo: {EVIL}", f"\r\nBcc: {EVIL}", f"\r\nFrom: <{EVIL}>"]


def _fold(draw: Draw, value: str) -> str:
    """Fold the value at its first blank (CRLF + blank), as a mail client does with a long header."""
    if " " not in value or draw(st.booleans()):
        return value
    head, _, tail = value.partition(" ")
    return head + draw(st.sampled_from(["\r\n ", "\r\n\t"])) + tail


@dataclass(frozen=True)
class PollCase:
    raw: bytes
    sender: FromCase
    injected: str
    fail_first: bool  # the first reply attempt fails with a TransientError


@st.composite
def poll_cases(draw: Draw) -> PollCase:
    case = draw(from_cases(POLL_DOMAINS))
    injected = draw(st.sampled_from(INJECTIONS))
    value = _fold(draw, case.values[0]) + injected
    raw = with_sender(RAW_MAIL, value.encode("utf-8"))
    for extra in case.values[1:]:
        raw = raw.replace(b"\r\nTo: ", b"\r\nFrom: " + extra.encode("utf-8") + b"\r\nTo: ", 1)
    return PollCase(raw, case, injected, draw(st.booleans()))


def _to_addresses(data: bytes) -> list[str]:
    """The addresses of the reply's To header, read back the way a mail client reads them."""
    message = message_from_string(data.decode("utf-8"), policy=policy.default)
    assert message.get_all("Cc") is None
    assert message.get_all("Bcc") is None
    [to] = message.get_all("To") or []
    assert isinstance(to, AddressHeader)
    return [address.addr_spec for address in to.addresses]


CHANNEL = make_channel(allowed_senders=["partner.example", "*.partner.example", "bücher.example"])


@pytest.mark.property
@scaled_timeout
@given(poll_cases())
def test_given_any_from_header_at_an_allowed_domain_when_polled_then_replies_go_only_to_the_screened_sender(
    case: PollCase,
) -> None:
    world = World()
    world.mailbox.deliver("u1", case.raw)
    from_values = parse_headers(case.raw).get_all("From")
    sender = screened(from_values)  # what the poll must screen: sender_address of the From header(s)

    first: dict[str, object] = {}
    if case.fail_first:
        world.replies.error = TransientError("SMTP 451 try later")
        first = world.poll(CHANNEL)
        assert world.replies.sent == []
        world.replies.error = None
    result = world.poll(CHANNEL)

    if world.replies.sent:
        event("answered")
        assert sender is not None, from_values
        assert len(world.replies.sent) == 1  # answered once, also after the failed attempt
        for reply in world.replies.sent:
            assert reply.recipient == sender, (from_values, reply.recipient)
            assert _to_addresses(reply.data) == [sender], from_values
        if case.sender.answers is not None and not case.injected.startswith("\r\nFrom"):
            assert sender in case.sender.answers, (case, sender)
        return
    if not result["recognized"] and not first.get("recognized"):
        # A raw line break ended the header block early: the keyword is gone, the message untouched.
        event("not recognised")
        assert world.mailbox.retrieved == []
        assert "u1" in world.mailbox.messages
        return
    event("quarantined")
    assert 1 in (result["rejected"], first.get("rejected")), (from_values, first, result)
    assert world.archive.keys("quarantine/")
    assert world.mailbox.messages == {}
    plain = case.sender.must_accept and not case.injected.startswith("\r\nFrom")
    if plain and sender is not None and reply_address_problem(sender, ascii_only=False) is None:
        pytest.fail(f"a plain allowed sender {sender!r} got no reply: {from_values!r}")
