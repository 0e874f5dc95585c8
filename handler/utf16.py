"""String lengths as SMC counts them: SMC runs on .NET, whose strings are UTF-16, so a character
outside the Basic Multilingual Plane (most emoji) takes two of a column's `length` units."""

from __future__ import annotations

_BMP_END = 0xFFFF


def length(text: str) -> int:
    """`text`'s length in UTF-16 code units."""
    if text.isascii():  # O(1) in CPython: the common case costs nothing
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def fits(text: str, limit: int) -> bool:
    """Whether `text` is at most `limit` UTF-16 code units long."""
    return len(text) * 2 <= limit or length(text) <= limit


def truncate(text: str, limit: int) -> str:
    """The longest prefix of `text` within `limit` UTF-16 code units, cut between characters
    (never inside a surrogate pair)."""
    if text.isascii():
        return text[:limit]
    units = 0
    for position, character in enumerate(text):
        units += 2 if ord(character) > _BMP_END else 1
        if units > limit:
            return text[:position]
    return text
