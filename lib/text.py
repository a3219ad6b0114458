"""Words for people: counts ("1 delivery", never "1 deliveries") and receivers' silences."""

from __future__ import annotations

import re

_TIMED_OUT = re.compile(r"timed out after (\d+(?:\.\d+)?) s")


def counted(count: int, singular: str, plural: str) -> str:
    return f"{count:,} {singular if count == 1 else plural}"


def deliveries(count: int) -> str:
    return counted(count, "delivery", "deliveries")


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
