"""The tariff is data (tariff.json): brackets at their boundaries, validation of the file."""

import json
from decimal import Decimal

import pytest

from domain.shipments import Product, Tariff, default_tariff

SHIPPED = default_tariff()


@pytest.mark.parametrize(
    ("weight_g", "bracket_index"),
    [(1, 0), (100, 0), (101, 1), (250, 1), (251, 2), (500, 2), (501, 3), (1000, 3), (1001, 4), (2000, 4)],
)
def test_each_weight_falls_into_the_bracket_it_does_not_exceed(weight_g: int, bracket_index: int) -> None:
    # Given the shipped tariff / When a letter of weight_g is priced / Then it costs its bracket's price
    for product in Product:
        assert SHIPPED.postage(product, weight_g) == SHIPPED.prices[product][bracket_index]


def test_shipped_tariff_has_the_design_brackets_and_sensible_prices() -> None:
    assert SHIPPED.brackets_g == (100, 250, 500, 1000, 2000)
    for index in range(len(SHIPPED.brackets_g)):
        b_post = SHIPPED.prices[Product.B_POST][index]
        a_post = SHIPPED.prices[Product.A_POST][index]
        registered = SHIPPED.prices[Product.REGISTERED][index]
        assert Decimal(0) < b_post < a_post < registered
    for prices in SHIPPED.prices.values():
        assert list(prices) == sorted(prices)
        assert all(price == price.quantize(Decimal("0.01")) for price in prices)


@pytest.mark.parametrize("weight_g", [0, 2001])
def test_weights_outside_the_tariff_have_no_price(weight_g: int) -> None:
    with pytest.raises(ValueError, match="weight"):
        SHIPPED.postage(Product.B_POST, weight_g)


def _document(**changes: object) -> str:
    document: dict[str, object] = {
        "version": "test",
        "currency": "CHF",
        "postage_chf": {
            product: {"100": "1.00", "2000": "2.50"} for product in ("A-POST", "B-POST", "REGISTERED")
        },
    }
    document.update(changes)
    return json.dumps(document)


def test_a_tariff_document_is_read_into_decimal_prices() -> None:
    tariff = Tariff.from_json(_document())
    assert tariff.brackets_g == (100, 2000)
    assert tariff.postage(Product.A_POST, 101) == Decimal("2.50")


@pytest.mark.parametrize(
    ("postage", "problem"),
    [
        ({"A-POST": {"2000": "1.00"}, "B-POST": {"2000": "1.00"}}, "no prices for REGISTERED"),
        (
            {"A-POST": {"2000": "1"}, "B-POST": {"2000": "1"}, "REGISTERED": {"100": "1", "2000": "2"}},
            "same weight brackets",
        ),
        ({p: {"1000": "1.00"} for p in ("A-POST", "B-POST", "REGISTERED")}, "2000"),
        ({p: {"2000": "1.005"} for p in ("A-POST", "B-POST", "REGISTERED")}, "not a CHF amount"),
        ({p: {"2000": "-1"} for p in ("A-POST", "B-POST", "REGISTERED")}, "not a CHF amount"),
        ({p: {"2000": 1.1} for p in ("A-POST", "B-POST", "REGISTERED", "C-POST")}, "C-POST"),
    ],
)
def test_a_broken_tariff_document_is_refused_with_the_reason(postage: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Tariff.from_json(_document(postage_chf=postage))


def test_tariff_currency_must_be_chf() -> None:
    with pytest.raises(ValueError, match="currency"):
        Tariff.from_json(_document(currency="EUR"))
