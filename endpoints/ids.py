"""Public identifiers: a short type prefix and random characters (`mrc_...`, `evt_...`).

Public ids are what merchants, receivers and the API see; primary keys stay internal.
"""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_lowercase + string.digits
_LENGTH = 24  # 24 characters of 36 symbols: about 124 bits, unguessable.


def new_id(prefix: str) -> str:
    return prefix + "_" + "".join(secrets.choice(_ALPHABET) for _ in range(_LENGTH))
