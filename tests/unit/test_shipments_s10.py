"""UPU S10 identifiers: check digits against published examples and the two special cases.

Every expected value below was also worked out by hand (weights 8 6 4 2 3 5 9 7):

* 47312482 -> 9: the worked example of https://en.wikipedia.org/wiki/S10_(UPU_standard)
  4*8+7*6+3*4+1*2+2*3+4*5+8*9+2*7 = 200; 200 mod 11 = 2; 11 - 2 = 9.
* RR 28704377 5 IN: the Indian registered-mail label pictured in the same Wikipedia article
  2*8+8*6+7*4+0*2+4*3+3*5+7*9+7*7 = 231; 231 mod 11 = 0; 11 - 0 = 11 -> 5.
* RC 95280006 8 DE: a Deutsche Post parcel id quoted on forum.lazarus.freepascal.org (topic 72479)
  9*8+5*6+2*4+8*2+0+0+0+6*7 = 168; 168 mod 11 = 3; 11 - 3 = 8.
* 12345678 -> 5: 8+12+12+8+15+30+63+56 = 204; 204 mod 11 = 6; 11 - 6 = 5.
* 00000008 -> 0: 8*7 = 56; 56 mod 11 = 1; 11 - 1 = 10 -> 0.
"""

import pytest

from domain.shipments import Product, check_digit, is_valid_s10, s10_id


@pytest.mark.parametrize(
    ("serial", "expected"),
    [(47312482, 9), (28704377, 5), (95280006, 8), (12345678, 5), (8, 0), (10010, 5)],
)
def test_check_digit_matches_hand_computed_and_published_examples(serial: int, expected: int) -> None:
    # Given an 8-digit serial / When its check digit is computed / Then it is the published one
    assert check_digit(serial) == expected


@pytest.mark.parametrize("published", ["RR287043775IN", "RC952800068DE"])
def test_published_identifiers_are_valid(published: str) -> None:
    assert is_valid_s10(published)


def test_identifier_is_service_letters_serial_check_digit_and_issuer() -> None:
    # Given the Wikipedia serial / When it becomes a registered letter from Switzerland
    identifier = s10_id(Product.REGISTERED.service_indicator, 47312482, "CH")
    # Then the 13 characters are RR + serial + 9 + CH
    assert identifier == "RR473124829CH"
    assert len(identifier) == 13
    assert is_valid_s10(identifier)


def test_small_serials_are_zero_padded_to_eight_digits() -> None:
    assert s10_id("LB", 8, "CH") == "LB000000080CH"


@pytest.mark.parametrize(
    ("product", "letters"), [(Product.A_POST, "LA"), (Product.B_POST, "LB"), (Product.REGISTERED, "RR")]
)
def test_service_indicator_per_product(product: Product, letters: str) -> None:
    assert product.service_indicator == letters


@pytest.mark.parametrize(
    "identifier",
    ["RR473124828CH", "RR47312482CH", "rr473124829CH", "RR473124829XX", "RR473124829CHX", ""],
)
def test_wrong_check_digit_or_layout_is_not_valid(identifier: str) -> None:
    assert not is_valid_s10(identifier)


@pytest.mark.parametrize(
    ("letters", "serial", "issuer"),
    [("LB", 0, "CH"), ("LB", 100_000_000, "CH"), ("L", 1, "CH"), ("LB", 1, "XX"), ("LB", 1, "ch")],
)
def test_impossible_identifiers_are_refused(letters: str, serial: int, issuer: str) -> None:
    with pytest.raises(ValueError, match="S10"):
        s10_id(letters, serial, issuer)
