"""A password hasher for random, high-entropy secrets (OAuth client secrets).

A slow key-derivation function protects a guessable password; a 256-bit random secret is
not guessable, so one SHA-256 protects it as well and costs microseconds instead of about a
quarter of a second of CPU per check. API keys are hashed the same way.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.contrib.auth.hashers import BasePasswordHasher, mask_hash
from django.utils.crypto import constant_time_compare

ALGORITHM = "sha256"


class RandomSecretHasher(BasePasswordHasher):
    """`sha256$$<hex digest>`: unsalted, as a random secret needs no salt."""

    algorithm = ALGORITHM

    def salt(self) -> str:
        return ""

    def encode(self, password: str, salt: str) -> str:
        if salt != "":
            raise ValueError("salt must be empty.")
        return f"{self.algorithm}$${hashlib.sha256(password.encode()).hexdigest()}"

    def decode(self, encoded: str) -> dict[str, Any]:
        algorithm, _, digest = encoded.split("$", 2)
        assert algorithm == self.algorithm
        return {"algorithm": algorithm, "hash": digest, "salt": None}

    def verify(self, password: str, encoded: str) -> bool:
        return constant_time_compare(encoded, self.encode(password, ""))

    def safe_summary(self, encoded: str) -> dict[str, Any]:
        return {"algorithm": self.algorithm, "hash": mask_hash(self.decode(encoded)["hash"])}

    def harden_runtime(self, password: str, encoded: str) -> None:
        pass
