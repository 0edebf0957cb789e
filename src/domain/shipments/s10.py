"""UPU S10 item identifiers: ``LA 12345678 5 CH`` written without blanks (13 characters).

Layout: two service-indicator letters, an 8-digit serial, one check digit, the issuer's ISO 3166-1
alpha-2 country code. The check digit weighs the serial's digits 8 6 4 2 3 5 9 7 (left to right),
takes ``11 - (sum mod 11)`` and maps 10 to 0 and 11 to 5.
"""

import re

from domain.shipments.countries import ISO_3166_ALPHA2

SERIAL_MIN = 1
SERIAL_MAX = 99_999_999

_WEIGHTS = (8, 6, 4, 2, 3, 5, 9, 7)
_S10 = re.compile(r"([A-Z]{2})([0-9]{8})([0-9])([A-Z]{2})")
_LETTERS = re.compile(r"[A-Z]{2}")


def check_digit(serial: int) -> int:
    """The S10 check digit of an 8-digit ``serial`` (0..99_999_999, zero-padded to 8 digits)."""
    if not 0 <= serial <= SERIAL_MAX:
        raise ValueError(f"S10 serial must have at most 8 digits, got {serial}")
    total = sum(int(digit) * weight for digit, weight in zip(f"{serial:08d}", _WEIGHTS, strict=True))
    check = 11 - total % 11
    if check == 10:
        return 0
    if check == 11:
        return 5
    return check


def s10_id(service_indicator: str, serial: int, issuer_country: str) -> str:
    """The 13-character S10 identifier, e.g. ``s10_id("RR", 47312482, "CH") == "RR473124829CH"``."""
    if not _LETTERS.fullmatch(service_indicator):
        raise ValueError(f"S10 service indicator must be two capital letters, got {service_indicator!r}")
    if issuer_country not in ISO_3166_ALPHA2:
        raise ValueError(f"S10 issuer must be an ISO 3166-1 alpha-2 code, got {issuer_country!r}")
    if not SERIAL_MIN <= serial <= SERIAL_MAX:
        raise ValueError(f"S10 serial must be in {SERIAL_MIN}..{SERIAL_MAX}, got {serial}")
    return f"{service_indicator}{serial:08d}{check_digit(serial)}{issuer_country}"


def is_valid_s10(identifier: str) -> bool:
    """True when ``identifier`` has the S10 layout and a correct check digit."""
    match = _S10.fullmatch(identifier)
    if match is None:
        return False
    _, serial, check, country = match.groups()
    return country in ISO_3166_ALPHA2 and check_digit(int(serial)) == int(check)
