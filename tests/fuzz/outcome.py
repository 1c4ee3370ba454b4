"""The one shape of every parser property: a value, or the parser's own refusal."""

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def outcome(call: Callable[[], T], *refusals: type[Exception]) -> T | Exception:
    """What ``call`` returns, or the refusal among ``refusals`` it raises.

    Any other exception propagates and fails the property: a parser must never raise one.
    """
    try:
        return call()
    except refusals as exc:
        return exc
