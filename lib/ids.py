"""Public identifiers: a short type prefix and random characters (`mrc_...`, `evt_...`).

Public ids are what merchants, receivers and the API see; primary keys stay internal.
"""

from __future__ import annotations

import os
import string

_ALPHABET = string.ascii_lowercase + string.digits
_LENGTH = 24  # 24 characters of 36 symbols: about 124 bits, unguessable.


def new_id(prefix: str) -> str:
    # One read of 16 random bytes, written in base 36: a character at a time through
    # secrets.choice cost 24 system calls per id, and an event makes a dozen ids.
    number = int.from_bytes(os.urandom(16), "big")
    chars = []
    for _ in range(_LENGTH):
        number, digit = divmod(number, 36)
        chars.append(_ALPHABET[digit])
    return prefix + "_" + "".join(chars)
