"""The values of one search statement and its *shape* (everything but the values).

The builders of :mod:`~app.index.search.predicates` and :mod:`~app.index.search.plan` run in
two steps: first they hand every value to a :class:`Binder` (which names it ``qv_0``,
``qv_1``, ... and records a label saying where it goes) and mark the keys and variants that
decide the SQL, returning a closure (:data:`Lazy`); only when no statement of that shape is
cached (:mod:`~app.index.search.statements`) is the closure called to construct the
SQLAlchemy statement, with the same parameters. One function therefore decides both the SQL
of a match and its values, and a value is always a bound parameter, never SQL text.
"""

from collections.abc import Callable, Hashable
from typing import Any

from sqlalchemy import BigInteger, BindParameter, ColumnElement, bindparam

__all__ = ["PREFIX", "Binder", "Lazy", "Param"]

#: the names of the request's bound parameters (``qv_0``, ...; SQLAlchemy's own are ``x_1``)
PREFIX = "qv_"

#: a condition constructed on demand (only when its statement's shape is not cached)
Lazy = Callable[[], ColumnElement[bool]]


class Param:
    """One value of a statement: the bound parameter ``name`` (never inlined into the SQL)."""

    __slots__ = ("name", "value")

    def __init__(self, name: str, value: Any) -> None:
        self.name = name
        self.value = value

    def sql(self) -> BindParameter[Any]:
        """The bound parameter, typed from its value (as SQLAlchemy types a plain value; an
        integer as BIGINT, the type of the DICOM integer columns: IS goes beyond 32 bits)."""
        if type(self.value) is int:
            return bindparam(self.name, self.value, type_=BigInteger())
        return bindparam(self.name, self.value)


class Binder:
    """The values of one statement, in order, and its shape (the dialect first).

    ``shape`` is hashable once frozen into a tuple: the statement cache's key.
    """

    __slots__ = ("shape", "sqlite", "values")

    def __init__(self, sqlite: bool, *shape: Hashable) -> None:
        self.sqlite = sqlite
        self.values: list[Any] = []
        self.shape: list[Hashable] = [sqlite, *shape]

    def __call__(self, value: Any, label: str) -> Param:
        """``value`` as the next bound parameter; ``label`` (where it goes) joins the shape."""
        self.shape.append(label)
        self.values.append(value)
        return Param(f"{PREFIX}{len(self.values) - 1}", value)

    def mark(self, token: Hashable) -> None:
        """A variant that decides the SQL without a value of its own (a key, a form)."""
        self.shape.append(token)
