"""Password hashing with argon2: hash, verify in comparable time, re-hash when stale."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 8


class Passwords:
    """An argon2 hasher with the deployment's cost parameters."""

    def __init__(self, *, time_cost: int, memory_kib: int) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)
        self._dummy: str | None = None

    def hash(self, password: str) -> str:
        """Hash a password with a fresh salt."""
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        """Tell whether the password matches the stored hash."""
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        """Tell whether the hash was made with other parameters than today's."""
        return self._hasher.check_needs_rehash(password_hash)

    def verify_nothing(self, password: str) -> None:
        """Spend the time of one verification, for an e-mail nobody registered.

        Without it an unknown e-mail answers much faster than a wrong password,
        which tells an attacker which addresses have accounts.
        """
        if self._dummy is None:
            self._dummy = self._hasher.hash(secrets.token_urlsafe(16))
        self.verify(self._dummy, password)
