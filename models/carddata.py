"""Card data guard: spot a primary account number (PAN) in text, and hide it.

payql never handles card data (PCI DSS SAQ A): clients send gateway tokens. A
card number typed into a free-text field (a name, an address, a refund reason,
metadata) must be refused before it is stored or logged. A PAN here is a run of
13 to 19 digits that passes the Luhn check, written plain or grouped by spaces,
dashes, dots, underscores or slashes (up to three between digits), in any Unicode
digits that normalize to 0–9.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from dataclasses import fields, is_dataclass
from decimal import Decimal
from typing import Any

# Digits with up to three separators between them (spaces of any kind, dashes, dots,
# underscores, slashes, zero-width characters), not glued to other digits.
_SEPARATOR = r"[\s\-._/\u200b\u200c\u200d\u2060\ufeff]"
_CANDIDATE = re.compile(rf"(?<![0-9])[0-9](?:{_SEPARATOR}{{0,3}}[0-9]){{12,}}(?![0-9])")
MIN_DIGITS, MAX_DIGITS = 13, 19
_DIGITS = re.compile(r"[0-9]+")


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        d = ord(char) - 48
        if index % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _pans(text: str) -> Iterator[tuple[int, int]]:
    """Spans of `text` that hold a Luhn-valid number of 13 to 19 digits.

    A run of more than 19 digits is no card number, but a grouped run may hold one
    beside other digits ("4242 4242 4242 4242 1234"), so runs of whole groups are tried."""
    for match in _CANDIDATE.finditer(text):
        run, offset = match.group(), match.start()
        groups = [(m.start(), m.end()) for m in _DIGITS.finditer(run)]
        first = 0
        while first < len(groups):
            found = _card_at(run, groups, first)
            if found is None:
                first += 1
                continue
            last = found
            yield offset + groups[first][0], offset + groups[last][1]
            first = last + 1


def _card_at(run: str, groups: list[tuple[int, int]], first: int) -> int | None:
    """The last group of a card number starting at group `first`, if there is one."""
    digits = ""
    for last in range(first, len(groups)):
        begin, end = groups[last]
        digits += run[begin:end]
        if len(digits) > MAX_DIGITS:
            return None
        if len(digits) >= MIN_DIGITS and luhn_valid(digits):
            return last
    return None


def _normal(text: str) -> str:
    """Full-width and other look-alike digits and spaces as plain ones (NFKC)."""
    return unicodedata.normalize("NFKC", text) if not text.isascii() else text


def contains_pan(text: str) -> bool:
    return next(_pans(_normal(text)), None) is not None


def redact_pans(text: str) -> str:
    """The text with every card number replaced by a marker (for logs)."""
    if not any(c.isdigit() for c in text):
        return text
    text = _normal(text)
    spans = list(_pans(text))
    for begin, end in reversed(spans):
        text = text[:begin] + "[card number removed]" + text[end:]
    return text


def find_pan(value: Any, path: str = "input") -> str | None:
    """The path of the first string inside `value` that holds a card number, if any."""
    return find_string(value, contains_pan, path)


def find_string(value: Any, matches: Callable[[str], bool], path: str = "input") -> str | None:
    """The path of the first string inside `value` that `matches`, if any.

    Walks strings, numbers (as written), mappings (keys too), sequences and
    dataclasses (Strawberry inputs)."""
    if isinstance(value, str):
        return path if matches(value) else None
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return path if matches(str(value)) else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and matches(key):
                return path
            found = find_string(item, matches, f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = find_string(item, matches, f"{path}[{index}]")
            if found:
                return found
        return None
    if is_dataclass(value) and not isinstance(value, type):
        for f in fields(value):
            found = find_string(getattr(value, f.name), matches, f"{path}.{_camel(f.name)}")
            if found:
                return found
    return None


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
