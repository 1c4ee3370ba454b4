"""Embedded users' passwords and names: argon2id hashes, the password rules, the name rules.

Hashes are argon2id with argon2-cffi's defaults (RFC 9106's second recommended option: 3
passes over 64 MiB, 4 lanes), in PHC string form, so each hash carries its own parameters and
an older hash is recognised (:meth:`Passwords.needs_rehash`) and replaced at the next sign-in.
There is no default password: every password is chosen by a person.

A sign-in with an unknown name verifies the password against a dummy hash of the same
parameters, so the time taken does not tell whether the name exists.
"""

import secrets
import unicodedata
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = [
    "MAX_PASSWORD_CHARS",
    "MIN_PASSWORD_CHARS",
    "InvalidPassword",
    "InvalidUsername",
    "Passwords",
    "check_password",
    "normalize_password",
    "normalize_username",
]

MIN_PASSWORD_CHARS: Final = 12
#: longer passwords are refused before hashing (argon2 hashes any length, a login form must not
#: let anyone make it hash megabytes)
MAX_PASSWORD_CHARS: Final = 1024
MAX_USERNAME_CHARS: Final = 64
_USERNAME_EXTRA: Final = frozenset("._@+-")


class InvalidUsername(ValueError):
    """A user name that does not follow the rules (:func:`normalize_username`)."""


class InvalidPassword(ValueError):
    """A password that does not follow the rules (:func:`check_password`)."""


def normalize_username(value: str) -> str:
    """A user name as stored and compared: NFKC, lower case, trimmed; 1 to 64 characters of
    letters, digits and ``. _ @ + -``, starting with a letter or digit.

    >>> normalize_username("  Alice.Smith@Example.org ")
    'alice.smith@example.org'
    >>> normalize_username("\uff42\uff4f\uff42")  # full-width letters: the same name
    'bob'
    >>> normalize_username("bob smith")
    Traceback (most recent call last):
    ...
    app.auth.passwords.InvalidUsername: a user name has letters, digits and . _ @ + - only
    """
    name = unicodedata.normalize("NFKC", value).strip().lower()
    if not name:
        raise InvalidUsername("a user name cannot be empty")
    if len(name) > MAX_USERNAME_CHARS:
        raise InvalidUsername(f"a user name has at most {MAX_USERNAME_CHARS} characters")
    if not all(c.isalnum() or c in _USERNAME_EXTRA for c in name):
        raise InvalidUsername("a user name has letters, digits and . _ @ + - only")
    if not name[0].isalnum():
        raise InvalidUsername("a user name starts with a letter or a digit")
    return name


def normalize_password(password: str) -> str:
    """The password as hashed: NFKC (the same characters typed on another keyboard or system
    give the same password, as NIST SP 800-63B §5.1.1.2 recommends)."""
    return unicodedata.normalize("NFKC", password)


def check_password(password: str, *, username: str, min_chars: int = MIN_PASSWORD_CHARS) -> str:
    """The password as hashed, if it may be a password (length, not the user name).

    >>> check_password("correct horse battery", username="alice")
    'correct horse battery'
    >>> check_password("short", username="alice")
    Traceback (most recent call last):
    ...
    app.auth.passwords.InvalidPassword: a password has at least 12 characters
    """
    normalized = normalize_password(password)
    if len(normalized) < min_chars:
        raise InvalidPassword(f"a password has at least {min_chars} characters")
    if len(normalized) > MAX_PASSWORD_CHARS:
        raise InvalidPassword(f"a password has at most {MAX_PASSWORD_CHARS} characters")
    if normalized.strip().lower() == username.lower():
        raise InvalidPassword("a password cannot be the user name")
    if any(unicodedata.category(c) == "Cc" for c in normalized):
        raise InvalidPassword("a password cannot contain control characters")
    return normalized


class Passwords:
    """argon2id hashing and verification (CPU- and memory-heavy: call from a worker thread)."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        self._dummy: str | None = None

    def hash(self, password: str) -> str:
        """The PHC string of a password that passed :func:`check_password`."""
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored``; with no hash (an unknown user), the same work
        against a dummy hash, and False."""
        candidate = normalize_password(password)
        if len(candidate) > MAX_PASSWORD_CHARS:
            candidate = candidate[:MAX_PASSWORD_CHARS]  # still hashed: the same time as any other
        if stored is None:
            self._verify(self._dummy_hash(), candidate)
            return False
        return self._verify(stored, candidate)

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        """Whether a stored hash was made with other parameters than today's."""
        try:
            return self._hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True

    def _dummy_hash(self) -> str:
        if self._dummy is None:
            self._dummy = self._hasher.hash(secrets.token_urlsafe(24))
        return self._dummy
