"""Password hashing and the rules of names and passwords (app.auth.passwords)."""

import time

import pytest
from argon2 import PasswordHasher

from app.auth.passwords import (
    MAX_PASSWORD_CHARS,
    InvalidPassword,
    InvalidUsername,
    Passwords,
    check_password,
    normalize_username,
)

#: cheap parameters for the tests that only need a hash (the defaults take ~50 ms each)
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def test_hashes_are_argon2id_and_salted() -> None:
    passwords = Passwords()
    first = passwords.hash("correct horse battery")
    second = passwords.hash("correct horse battery")
    assert first.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert first != second  # a salt of its own each
    assert passwords.verify(first, "correct horse battery")
    assert passwords.verify(second, "correct horse battery")
    assert not passwords.verify(first, "correct horse batterY")
    assert not passwords.needs_rehash(first)


def test_unknown_hashes_and_garbage_never_verify() -> None:
    passwords = Passwords(FAST)
    assert not passwords.verify("not a hash", "x")
    assert not passwords.verify("$argon2id$v=19$m=8,t=1,p=1$AAAA$BBBB", "x")
    assert not passwords.verify(None, "anything")
    assert passwords.needs_rehash("not a hash")


def test_hashes_of_other_parameters_are_remade() -> None:
    old = Passwords(FAST).hash("correct horse battery")
    today = Passwords()
    assert today.verify(old, "correct horse battery")
    assert today.needs_rehash(old)


def test_unicode_passwords_are_normalized() -> None:
    """The same characters typed differently (composed é, decomposed e + accent) are one
    password."""
    passwords = Passwords(FAST)
    stored = passwords.hash(check_password("caf\u00e9 au lait noir", username="a"))
    assert passwords.verify(stored, "cafe\u0301 au lait noir")


def test_an_unknown_user_costs_a_verification() -> None:
    """Without a hash to check, the dummy hash is verified: an unknown name takes about the time
    of a known one with a wrong password."""
    passwords = Passwords()
    stored = passwords.hash("correct horse battery")
    passwords.verify(None, "warm-up")  # the dummy hash is made once

    def timed(stored: str | None) -> float:
        started = time.perf_counter()
        assert not passwords.verify(stored, "wrong password!")
        return time.perf_counter() - started

    known = min(timed(stored) for _ in range(3))
    unknown = min(timed(None) for _ in range(3))
    assert unknown > known * 0.5, (unknown, known)


def test_overlong_passwords_are_cut_not_hashed_whole() -> None:
    passwords = Passwords(FAST)
    stored = passwords.hash("x" * MAX_PASSWORD_CHARS)
    assert passwords.verify(stored, "x" * (MAX_PASSWORD_CHARS * 1000))
    with pytest.raises(InvalidPassword, match="at most"):
        check_password("x" * (MAX_PASSWORD_CHARS + 1), username="a")


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short", "at least 12"),
        ("alice.smith1", "cannot be the user name"),
        ("correct horse\x00battery", "control characters"),
    ],
)
def test_password_rules(password: str, message: str) -> None:
    with pytest.raises(InvalidPassword, match=message):
        check_password(password, username="alice.smith1")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("a" * 65, "at most 64"),
        ("bob smith", "letters, digits"),
        ("<script>", "letters, digits"),
        (".hidden", "starts with a letter"),
        ("bob\nadmin", "letters, digits"),
    ],
)
def test_username_rules(name: str, message: str) -> None:
    with pytest.raises(InvalidUsername, match=message):
        normalize_username(name)


def test_usernames_compare_without_case() -> None:
    assert normalize_username("Alice") == normalize_username("ALICE") == "alice"
    assert normalize_username("j.doe+pacs@hospital.example") == "j.doe+pacs@hospital.example"
