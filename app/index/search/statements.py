"""The statement cache: search statements compiled once per query *shape*.

Each plan (:mod:`~app.index.search.plan`) hands its values to a
:class:`~app.index.search.binder.Binder` (named bound parameters, paging included) and returns
how to construct its SQL, which runs only when the shape is not cached. A search then costs no
SQLAlchemy construction, cache-key generation or compilation: the cached SQL text runs through
the driver (``exec_driver_sql``) with the request's values, each passed through the bind
processor of its type for the dialect (SQLite's ``DATE``, for instance, takes ISO text).

Everything is read through SQLAlchemy's documented API: ``SQLCompiler.positiontup``,
``.binds``, ``.construct_params()``, ``.literal_execute_params``/``.post_compile_params``, and
per parameter ``TypeEngine.dialect_impl(dialect).bind_processor(dialect)`` (what a plain
execute applies; it used to be read from the private ``compiled._bind_processors``).

Why not SQLAlchemy's own compiled cache (keyed by the statement's cache key)? It still has
the statement constructed, or at least its cache key generated, on every search. CPU per
``search()`` (plan, statement, driver round trip, hits; no JSON), mean of the 14 ``load.py``
shapes, median of 15 rounds of 30 searches each, the three ways taking turns; 5,000-instance
index; ``bench/run.py query statements`` three times, on the shared 2-core machine while other
work ran (load average ~3), 2026-12-06:

- this cache (compiled text): PostgreSQL 374 / 352 / 295 us, SQLite 576 / 572 / 581;
- our statements kept per shape, SQLAlchemy's compiled cache (cache key generated per
  search): PostgreSQL 401 / 381 / 325, SQLite 606 / 598 / 598;
- constructed every search, SQLAlchemy's compiled cache alone: PostgreSQL 2075 / 1841 / 1318,
  SQLite 1771 / 1665 / 1772.

The means of single rounds ranged over 258-441 / 274-469 / 1131-2376 us (PostgreSQL, all three
runs). Dropping this cache costs 3 to 6 times the CPU; keeping constructed statements and
letting SQLAlchemy key and compile them costs 3 to 10% more, on every run. Reading the
processors through the public API changed a cache miss only: ``QueryService.search``
(``bench/run.py query cpu --mode service --runs 100``, 8 alternating rounds, same index) 800
us before (667-911), 812 after (679-904): within noise.
"""

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Result
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Select
from sqlalchemy.sql.compiler import SQLCompiler

from app.index.search.binder import PREFIX, Binder
from app.index.search.plan import Plan

__all__ = ["STATEMENTS", "StatementCache", "Template", "compile_template", "execute"]

#: turns a value into what the driver takes (None: passed as is)
Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled statement of one shape: its SQL text and, per placeholder in order, where its
    value comes from (``index`` into the request's values, else the compiled constant ``value``)
    and the dialect's bind processor for it."""

    sql: str
    #: (index or -1, constant value, bind processor) per placeholder
    slots: tuple[tuple[int, Any, Processor], ...]
    #: the placeholder names, when the paramstyle is named (None: positional)
    names: tuple[str, ...] | None

    def parameters(self, values: list[Any]) -> tuple[Any, ...] | dict[str, Any]:
        """The driver's parameters for the request's ``values``."""
        out = tuple(
            value if i < 0 else (values[i] if process is None else process(values[i]))
            for i, value, process in self.slots
        )
        return out if self.names is None else dict(zip(self.names, out, strict=True))


def compile_template(stmt: Select[Any], dialect: Dialect) -> Template | None:
    """``stmt`` compiled once for ``dialect``, or None if it cannot be run from its text alone
    (parameters rendered or expanded at execution time)."""
    compiled = stmt.compile(dialect=dialect)
    if not isinstance(compiled, SQLCompiler):  # a SELECT always compiles to one
        return None
    if compiled.literal_execute_params or compiled.post_compile_params:
        return None
    positional = compiled.positiontup is not None
    names = list(compiled.positiontup if compiled.positiontup is not None else compiled.binds)
    constants = compiled.construct_params()
    slots: list[tuple[int, Any, Processor]] = []
    for name in names:
        # the processing a plain execute applies to this parameter, through the public API
        process = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
        if name.startswith(PREFIX):
            slots.append((int(name[len(PREFIX) :]), None, process))
        else:  # a constant of the statement itself (``0``, ``'^'``), never a request value
            value = constants[name]
            slots.append((-1, value if process is None else process(value), None))
    return Template(compiled.string, tuple(slots), None if positional else tuple(names))


class StatementCache:
    """Compiled statements by shape, least recently used dropped past ``size``.

    A shape is everything that decides the SQL text: the statement (page or count, capped or
    not), the resource, the dialect, and per match key its matcher kind and where each of its
    values goes (so list arity and range ends), the path UIDs and the restriction's form.
    Values are never part of a shape: they are bound parameters of every execution.
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, Template | None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def template(
        self, dialect: Dialect, b: Binder, build: Callable[[], Select[Any]]
    ) -> Template | None:
        """The compiled statement of ``b``'s shape, compiled from ``build()`` if not cached
        (None: a statement that cannot run from its text alone)."""
        dialect_key = (dialect.name, dialect.driver, dialect.paramstyle)
        key: tuple[Hashable, ...] = (*dialect_key, dialect.server_version_info, *b.shape)
        try:
            self._entries.move_to_end(key)
            return self._entries[key]
        except KeyError:
            pass
        template = compile_template(build(), dialect)
        self._entries[key] = template
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return template

    def clear(self) -> None:
        self._entries.clear()

    def texts(self) -> list[str]:
        """The SQL texts cached, least recently used first (to inspect the cache)."""
        return [t.sql for t in self._entries.values() if t is not None]


#: the process-wide statement cache of :func:`~app.index.search.search`
STATEMENTS = StatementCache()


async def execute(conn: AsyncConnection, plan: Plan) -> Result[Any]:
    """Run a planned statement from its cached compiled text (constructed on a shape's first
    use), straight through the driver; the values are bound parameters."""
    b, build = plan
    template = STATEMENTS.template(conn.dialect, b, build)
    result: Result[Any]
    if template is None:
        result = await conn.execute(build())
    else:
        result = await conn.exec_driver_sql(template.sql, template.parameters(b.values))
    return result
