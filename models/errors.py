"""Domain errors: an expected failure with a code the API reports as data."""

from __future__ import annotations

from enum import Enum


class ErrorCode(Enum):
    VALIDATION = "VALIDATION"
    NOT_FOUND = "NOT_FOUND"
    FORBIDDEN = "FORBIDDEN"
    AMOUNT_MISMATCH = "AMOUNT_MISMATCH"
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
    INVALID_STATE = "INVALID_STATE"
    OUT_OF_STOCK = "OUT_OF_STOCK"
    REFUND_EXCEEDS_AVAILABLE = "REFUND_EXCEEDS_AVAILABLE"
    REFUND_WINDOW_EXPIRED = "REFUND_WINDOW_EXPIRED"
    IDEMPOTENCY_KEY_REUSED = "IDEMPOTENCY_KEY_REUSED"
    CARD_DATA_REJECTED = "CARD_DATA_REJECTED"
    GATEWAY_UNAVAILABLE = "GATEWAY_UNAVAILABLE"
    GATEWAY_ERROR = "GATEWAY_ERROR"
    RATE_LIMITED = "RATE_LIMITED"


class DomainError(Exception):
    def __init__(self, code: ErrorCode, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def __repr__(self) -> str:
        return f"DomainError({self.code.value}, {self.message!r}, field={self.field!r})"


class PublicError(Exception):
    """An expected failure outside the payment rules whose message is meant for the
    client as it is (a subscriber that fell behind, say): never masked."""


def validation(message: str, field: str | None = None) -> DomainError:
    return DomainError(ErrorCode.VALIDATION, message, field)


def not_found(what: str, field: str | None = None) -> DomainError:
    return DomainError(ErrorCode.NOT_FOUND, f"{what} not found", field)


def invalid_state(message: str) -> DomainError:
    return DomainError(ErrorCode.INVALID_STATE, message)
