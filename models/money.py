"""Money: integers in minor units inside, Decimal in major units at the edge.

Exponents follow ISO 4217. Never a float anywhere in here.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from models.errors import validation

# Every active ISO 4217 code with an exponent other than 2 ...
_EXPONENT_0 = ("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF").split()
_EXPONENT_3 = "BHD IQD JOD KWD LYD OMR TND".split()
_EXPONENT_4 = "CLF UYW".split()
# ... and those with the usual two.
_EXPONENT_2 = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP "
    "BYN BZD CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP "
    "GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT "
    "LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN "
    "NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP "
    "SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VES "
    "WST XCD YER ZAR ZMW ZWG"
).split()

EXPONENTS: dict[str, int] = {
    **dict.fromkeys(_EXPONENT_2, 2),
    **dict.fromkeys(_EXPONENT_0, 0),
    **dict.fromkeys(_EXPONENT_3, 3),
    **dict.fromkeys(_EXPONENT_4, 4),
}

# A bound far above any real order, so that sums cannot overflow a BIGINT.
MAX_MINOR = 10**15


def currency_code(value: str, field: str = "currency") -> str:
    """The ISO 4217 code, upper-cased; unknown codes are a VALIDATION error."""
    code = value.strip().upper()
    if code not in EXPONENTS:
        raise validation(f"unknown currency {value!r}: use an ISO 4217 code such as USD", field)
    return code


def exponent(currency: str) -> int:
    return EXPONENTS[currency_code(currency)]


def to_minor(amount: Decimal, currency: str, field: str = "amount") -> int:
    """A positive amount in major units as an integer of minor units."""
    try:
        if not isinstance(amount, Decimal):
            raise TypeError
        if not amount.is_finite():
            raise InvalidOperation
        scaled = amount.scaleb(exponent(currency))
        integral = scaled.to_integral_value()
    except (InvalidOperation, TypeError):
        raise validation(f"{amount!r} is not an amount", field) from None
    if scaled != integral:
        places = exponent(currency)
        raise validation(
            f"{amount} has more decimals than {currency_code(currency)} allows ({places})", field
        )
    minor = int(integral)
    if minor <= 0:
        raise validation("the amount must be greater than zero", field)
    if minor >= MAX_MINOR:
        raise validation("the amount is too large", field)
    return minor


def to_major(minor: int, currency: str) -> Decimal:
    """Minor units as a Decimal with exactly the currency's decimals ("99.99", "1000")."""
    return Decimal(minor).scaleb(-EXPONENTS[currency])


def format_money(minor: int, currency: str) -> str:
    return f"{to_major(minor, currency)} {currency}"
