"""Words for people: counts ("1 delivery", never "1 deliveries") and receivers' silences."""

from __future__ import annotations

import re
import unicodedata

_TIMED_OUT = re.compile(r"timed out after (\d+(?:\.\d+)?) s")


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


def visible(text: str) -> str:
    """Text a person typed, with characters that change how it displays shown as [U+XXXX].

    Format characters (Unicode category Cf: bidirectional overrides and isolates such as
    U+202E, zero-width spaces and joiners, U+FEFF) display as nothing, or reorder what
    follows: "invoice\\u202efdp.exe" displays as "invoiceexe.pdf". URLs refuse them; names and
    descriptions keep them as typed and show them marked. Lone surrogates are escaped too.
    """
    if text.isascii():
        return text
    marked = "".join(f"[U+{ord(c):04X}]" if unicodedata.category(c) == "Cf" else c for c in text)
    return escape_surrogates(marked)


def no_answer(code: int | None, error: str) -> str:
    """How a receiver did not answer, or "" when it did.

    A timeout is recorded as status 408 (DealPOS's convention, kept in the API) with the
    transport's message as the error; a receiver's own 408 has only "HTTP 408" as its error.
    People read "no answer in 30 s", not a 408 the receiver never sent.

    Args:
        code: the recorded status code, None when nothing came back.
        error: the recorded error text ("" or "HTTP <code>" for a real answer).
    """
    if code is not None and error in ("", f"HTTP {code}"):
        return ""
    timed_out = _TIMED_OUT.search(error)
    if timed_out:
        return f"no answer in {timed_out.group(1)} s"
    return "no answer"
