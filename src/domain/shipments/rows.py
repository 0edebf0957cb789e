"""Column rules of the LetterShop shipment import v1 (DESIGN §5), one row at a time.

Every cell is trimmed before it is checked. An empty cell in an optional column means the same as
a missing column: ``country`` becomes ``CH``, ``product`` becomes ``B-POST``. A row is checked
completely: every problem is reported, not just the first. Messages are in plain ASCII words, always
start with a column name, and quote the offending value inside the sentence (``partner_text.quoted``:
at most 40 characters, then ``…``, control characters replaced), so no message cell starts with a
formula character. A reference that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return is a row error (DESIGN §6): it would be echoed into the export, where a spreadsheet could run it.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass

from domain.shipments.countries import ISO_3166_ALPHA2
from domain.shipments.partner_text import formula_start_name, quoted, starts_like_formula
from domain.shipments.products import DEFAULT_PRODUCT, Product
from domain.shipments.tariff import MAX_WEIGHT_G, MIN_WEIGHT_G

REQUIRED_COLUMNS = ("reference", "name", "street", "postcode", "city", "weight_g")
KNOWN_COLUMNS = (
    "reference",
    "name",
    "company",
    "street",
    "house_number",
    "postcode",
    "city",
    "country",
    "product",
    "weight_g",
)
DEFAULT_COUNTRY = "CH"

_TEXT_LIMITS = {
    # column: (required, maximum length)
    "reference": (True, 35),
    "name": (True, 35),
    "company": (False, 35),
    "street": (True, 35),
    "house_number": (False, 10),
    "city": (True, 35),
}
_POSTCODE_RULES: dict[str, tuple[re.Pattern[str], str]] = {
    **dict.fromkeys(("CH", "LI", "AT"), (re.compile(r"[0-9]{4}"), "4 digits")),
    **dict.fromkeys(("DE", "FR", "IT"), (re.compile(r"[0-9]{5}"), "5 digits")),
}
_OTHER_POSTCODE = (re.compile(r"[A-Z0-9 -]{3,10}"), "3 to 10 letters, digits, blanks or hyphens")
_WEIGHT = re.compile(r"[0-9]+")  # ASCII digits only; leading zeros allowed (``0250`` is 250 g)


@dataclass(frozen=True)
class CheckedRow:
    """One import row after the column rules: normalised values and the problems found.

    ``product`` and ``weight_g`` are ``None`` when their cell is invalid; the other values are the
    trimmed (postcode and country: upper-cased) cells, also when invalid.
    """

    reference: str
    name: str
    company: str
    street: str
    house_number: str
    postcode: str
    city: str
    country: str
    product: Product | None
    weight_g: int | None
    problems: tuple[str, ...]

    @property
    def is_valid(self) -> bool:
        """True when no rule was broken."""
        return not self.problems


def check_row(cells: Mapping[str, str]) -> CheckedRow:
    """Apply every column rule to one row; ``cells`` maps lower-case column names to raw values."""
    values = {column: cells.get(column, "").strip() for column in KNOWN_COLUMNS}
    problems: list[str] = []
    for column, (required, limit) in _TEXT_LIMITS.items():
        problems.extend(_check_text(column, values[column], required=required, limit=limit))
    if starts_like_formula(values["reference"]):
        problems.append(
            f"reference {show(values['reference'])} must not start with "
            f"{formula_start_name(values['reference'])} (it could run as a spreadsheet formula)"
        )

    country = values["country"].upper() or DEFAULT_COUNTRY
    if country not in ISO_3166_ALPHA2:
        problems.append(f"country {show(values['country'])} is not an ISO 3166-1 alpha-2 country code")
    postcode = values["postcode"].upper()
    problems.extend(_check_postcode(postcode, country))

    product = Product.parse(values["product"]) if values["product"] else DEFAULT_PRODUCT
    if product is None:
        allowed = ", ".join(member.value for member in Product)
        problems.append(f"product {show(values['product'])} is not one of {allowed}")

    weight_g, weight_problem = _check_weight(values["weight_g"])
    if weight_problem:
        problems.append(weight_problem)

    return CheckedRow(
        reference=values["reference"],
        name=values["name"],
        company=values["company"],
        street=values["street"],
        house_number=values["house_number"],
        postcode=postcode,
        city=values["city"],
        country=country,
        product=product,
        weight_g=weight_g,
        problems=tuple(problems),
    )


def _check_text(column: str, value: str, *, required: bool, limit: int) -> list[str]:
    if required and not value:
        return [f"{column} is missing"]
    if len(value) > limit:
        return [f"{column} is longer than {limit} characters ({len(value)})"]
    return []


def _check_postcode(postcode: str, country: str) -> list[str]:
    if not postcode:
        return ["postcode is missing"]
    pattern, shape = _POSTCODE_RULES.get(country, _OTHER_POSTCODE)
    if pattern.fullmatch(postcode):
        return []
    if country in ISO_3166_ALPHA2:
        return [f"postcode {show(postcode)} is not a valid {country} postcode ({shape})"]
    return [f"postcode {show(postcode)} is not a valid postcode ({shape})"]


def _check_weight(value: str) -> tuple[int | None, str | None]:
    if not value:
        return None, "weight_g is missing"
    if not _WEIGHT.fullmatch(value):
        return None, f"weight_g {show(value)} is not a whole number of grams"
    digits = value.lstrip("0") or "0"
    if len(digits) > len(str(MAX_WEIGHT_G)):  # far too heavy: not worth (or safe for) int()
        return None, f"weight_g {show(digits)} is not between {MIN_WEIGHT_G} and {MAX_WEIGHT_G} grams"
    weight = int(digits)
    if not MIN_WEIGHT_G <= weight <= MAX_WEIGHT_G:
        return None, f"weight_g {weight} is not between {MIN_WEIGHT_G} and {MAX_WEIGHT_G} grams"
    return weight, None


def show(value: str) -> str:
    """A cell value fit for a one-line message: quoted, control characters replaced, shortened."""
    return quoted(value)
