"""The order's schema: what a client may send, checked strictly, every problem named by its field.

A body is read with :func:`common.strict_json.loads` (``decimals=True``: a price is the decimal
that was written, never a double's approximation) and checked here::

    draft = read_order(value, max_lines=500)        # OrderDraft, or InvalidOrder listing each bad field
    draft.lines[0].unit_price                       # Decimal('12.50')

Totals are the API's to compute (``total``, each line's ``lineTotal``): a client that sends them
is refused, as is one that sends ``id``, ``version``, ``tenantId`` or any field the schema lacks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from common.problems import FieldError, Problem

__all__ = ["READ_ONLY_FIELDS", "STATUSES", "InvalidOrder", "Line", "OrderDraft", "money", "read_order"]

STATUSES = ("draft", "submitted", "paid", "shipped", "cancelled")
#: Fields of the representation that the API sets; a client may not.
READ_ONLY_FIELDS = frozenset({"id", "version", "total", "tenantId", "createdBy", "createdAt", "updatedAt", "deleted"})
WRITABLE_FIELDS = ("customerId", "currency", "lines", "status")
_LINE_FIELDS = frozenset({"sku", "quantity", "unitPrice"})
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_SKU = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_PRICE_TEXT = re.compile(r"(0|[1-9][0-9]{0,11})(\.[0-9]{1,4})?")
MAX_QUANTITY = 1_000_000
#: Prices have at most 12 integer digits and 4 decimal places: a total of 500 lines stays exact.
MAX_PRICE = Decimal("999999999999.9999")


class InvalidOrder(Problem):
    """The body is not an order: 400 with one entry per bad field."""

    def __init__(self, errors: Sequence[FieldError], detail: str = "The order is not valid; see 'errors'.") -> None:
        super().__init__(400, "invalid-order", detail, reason="invalid_order", errors=errors)


@dataclass(frozen=True)
class Line:
    sku: str
    quantity: int
    unit_price: Decimal

    @property
    def total(self) -> Decimal:
        return self.quantity * self.unit_price

    def to_json(self) -> dict[str, Any]:
        return {"sku": self.sku, "quantity": self.quantity, "unitPrice": money(self.unit_price)}


@dataclass(frozen=True)
class OrderDraft:
    """What a client sets of an order; ``status`` None when the body did not say."""

    customer_id: str
    currency: str
    lines: tuple[Line, ...]
    status: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The draft as stored in an event, prices as decimal strings."""
        return {"customerId": self.customer_id, "currency": self.currency, "lines": [line.to_json() for line in self.lines]}


def money(value: Decimal) -> str:
    """A decimal amount as text with two decimal places, or up to four when it has them."""
    cents = value.quantize(Decimal("0.01"))
    return str(cents if cents == value else value.quantize(Decimal("0.0001")))


def _price(value: Any, pointer: str, errors: list[FieldError]) -> Decimal | None:
    # A JSON number arrives as int or Decimal (strict_json.loads(decimals=True)); a string is read the same way.
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
        errors.append({"pointer": pointer, "detail": "must be a decimal number, such as 12.50 or \"12.50\""})
        return None
    text = value if isinstance(value, str) else (str(value) if isinstance(value, int) else format(value, "f"))
    if not _PRICE_TEXT.fullmatch(text):
        if isinstance(value, Decimal) and value.is_finite() and value >= 0 and _PRICE_TEXT.fullmatch(text.rstrip("0")):
            text = text.rstrip("0")  # 12.5000000 is 12.5
        else:
            errors.append({"pointer": pointer, "detail": "must be a decimal from 0 to 999999999999.9999 with at most "
                                                         "4 decimal places (no exponent, no sign)"})
            return None
    return Decimal(text)


def _line(value: Any, pointer: str, errors: list[FieldError]) -> Line | None:
    if not isinstance(value, dict):
        errors.append({"pointer": pointer, "detail": "must be an object with sku, quantity and unitPrice"})
        return None
    before = len(errors)
    for name in sorted(set(value) - _LINE_FIELDS):
        detail = "is computed by the API and may not be sent" if name == "lineTotal" else "is not a field of an order line"
        errors.append({"pointer": f"{pointer}/{_escape(name)}", "detail": detail})
    sku = value.get("sku")
    if not isinstance(sku, str) or not _SKU.fullmatch(sku):
        errors.append({"pointer": f"{pointer}/sku", "detail": "is required: 1 to 64 letters, digits, '.', '_' or '-', "
                                                              "starting with a letter or digit"})
    quantity = value.get("quantity")
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= MAX_QUANTITY:
        errors.append({"pointer": f"{pointer}/quantity", "detail": f"is required: an integer from 1 to {MAX_QUANTITY}"})
    if "unitPrice" not in value:
        errors.append({"pointer": f"{pointer}/unitPrice", "detail": "is required"})
        price = None
    else:
        price = _price(value["unitPrice"], f"{pointer}/unitPrice", errors)
    if len(errors) > before or price is None:
        return None
    assert isinstance(sku, str) and isinstance(quantity, int)
    return Line(sku, quantity, price)


def _escape(name: str) -> str:
    """A member name as a JSON Pointer reference token (RFC 6901), shortened for the reply."""
    return name[:64].replace("~", "~0").replace("/", "~1")


def read_order(value: Any, *, max_lines: int, allow_status: bool = True) -> OrderDraft:
    """The order a client sent (a full representation: POST, PUT, or a merge patch's result).

    Raises :class:`InvalidOrder` naming every bad field: unknown or read-only fields, a missing
    ``customerId``, ``currency`` or ``lines``, more than ``max_lines`` lines, a bad line.
    """
    if not isinstance(value, dict):
        raise InvalidOrder([{"pointer": "", "detail": "must be a JSON object"}], "The body must be a JSON object.")
    errors: list[FieldError] = []
    for name in sorted(set(value) - set(WRITABLE_FIELDS)):
        detail = "is set by the API and may not be sent" if name in READ_ONLY_FIELDS else "is not a field of an order"
        errors.append({"pointer": f"/{_escape(name)}", "detail": detail})
    customer = value.get("customerId")
    if not isinstance(customer, str) or not _ID.fullmatch(customer):
        errors.append({"pointer": "/customerId", "detail": "is required: 1 to 64 letters, digits, '.', '_', ':' or '-', "
                                                           "starting with a letter or digit"})
    currency = value.get("currency")
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        errors.append({"pointer": "/currency", "detail": "is required: an ISO 4217 code of three capital letters, "
                                                         "such as EUR"})
    status = value.get("status")
    if "status" in value and (status not in STATUSES if allow_status else status != "draft"):
        errors.append({"pointer": "/status", "detail": "must be one of " + ", ".join(STATUSES) if allow_status
                       else "is 'draft' when an order is created; change it afterwards"})
    raw_lines = value.get("lines")
    lines: list[Line] = []
    if not isinstance(raw_lines, list) or not raw_lines:
        errors.append({"pointer": "/lines", "detail": "is required: a list of 1 or more lines"})
    elif len(raw_lines) > max_lines:
        errors.append({"pointer": "/lines", "detail": f"holds {len(raw_lines)} lines; at most {max_lines} are accepted"})
    else:
        for index, raw in enumerate(raw_lines):
            line = _line(raw, f"/lines/{index}", errors)
            if line is not None:
                lines.append(line)
    if errors:
        raise InvalidOrder(errors)
    assert isinstance(customer, str) and isinstance(currency, str)
    return OrderDraft(customer, currency, tuple(lines), status if isinstance(status, str) else None)


def merge_patch(target: Mapping[str, Any], patch: Any) -> Any:
    """RFC 7396: ``patch`` applied to ``target`` (null removes a member; anything else replaces it,
    objects merged member by member, arrays replaced whole)."""
    if not isinstance(patch, dict):
        return patch
    result: dict[str, Any] = dict(target) if isinstance(target, Mapping) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name, {}), value)
    return result
