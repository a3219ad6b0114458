"""Counts in messages: "1 delivery", "2 deliveries", never "1 deliveries"."""

from __future__ import annotations

import re


def counted(count: int, singular: str, plural: str) -> str:
    return f"{count:,} {singular if count == 1 else plural}"


def deliveries(count: int) -> str:
    return counted(count, "delivery", "deliveries")


# A lone surrogate (U+D800 to U+DFFF without its pair) is valid in JSON's \u escapes and in
# a Python str, but UTF-8 cannot encode it: a page or answer holding one failed with a 500.
_SURROGATE = re.compile("[\ud800-\udfff]")


def has_surrogate(text: str) -> bool:
    return _SURROGATE.search(text) is not None


def escape_surrogates(text: str) -> str:
    """Each lone surrogate as the visible text `\\udXXX`; everything else unchanged."""
    if not has_surrogate(text):
        return text
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
