"""In-process CPU per search: the statement cache against SQLAlchemy's own compiled cache.

Every shape of :func:`qido_explain.qido_shapes` goes through ``app.index.search.search`` (plan,
statement, driver round trip, hits; no JSON) with each way of running its statements, taking
turns shape by shape and round by round so that a loaded machine slows all of them alike:

- ``shapes``: the statement cache of :mod:`app.index.search.statements` (what runs): a repeat
  shape runs its compiled text through the driver (``exec_driver_sql``);
- ``statements``: the constructed statement kept per shape, run by ``conn.execute(statement,
  values)``: SQLAlchemy generates its cache key and finds the compiled form in its own cache;
- ``construct``: no cache of ours: the statement constructed per search and run by
  ``conn.execute(statement)`` (SQLAlchemy's compiled cache alone).

The CPU time of this process (``time.process_time``) per search, median over the rounds, per
shape and for the mean of the shapes (with its spread over the rounds). The database server's
own CPU is not counted; every way must return the same rows (checked once per shape).

    .venv/bin/python bench/lib/qido_statements.py --database-url URL --dataset DIR \\
        [--runs 30] [--rounds 15] [--load ../shared/bench/load.py]
"""

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from qido_explain import qido_shapes, shape_arguments, to_query
from sqlalchemy import Result, Select
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from app.index.search import hits, search
from app.index.search.binder import PREFIX
from app.index.search.plan import Plan
from app.index.search.statements import execute as run_shapes

Execute = Callable[[AsyncConnection, Plan], Awaitable[Result[Any]]]
MAX_RESULTS = 1000  # LIGHTBOX_QIDO_MAX_RESULTS' default
COUNT_LIMIT = 10000  # LIGHTBOX_QIDO_COUNT_LIMIT's default


def _kept_statements() -> Execute:
    built: dict[tuple[Any, ...], Select[Any]] = {}

    async def execute(conn: AsyncConnection, plan: Plan) -> Result[Any]:
        b, build = plan
        key = (conn.dialect.name, *b.shape)
        stmt = built.get(key)
        if stmt is None:
            stmt = built[key] = build()
        values = {f"{PREFIX}{i}": value for i, value in enumerate(b.values)}
        result: Result[Any] = await conn.execute(stmt, values)
        return result

    return execute


async def _construct(conn: AsyncConnection, plan: Plan) -> Result[Any]:
    return await conn.execute(plan[1]())


def _use(way: Execute) -> None:
    """Have ``search`` run its statements ``way`` (the module global it calls)."""
    hits.__dict__["execute"] = way


WAYS: dict[str, Execute] = {
    "shapes": run_shapes,
    "statements": _kept_statements(),
    "construct": _construct,
}


async def run(args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    shapes = qido_shapes(args.load, args.dataset, args.seed)
    engine = create_async_engine(args.database_url)
    costs: dict[str, dict[str, list[float]]] = {way: {} for way in WAYS}
    try:
        async with engine.connect() as conn:

            async def once(query: Any, way: str) -> Any:
                _use(WAYS[way])
                limit = min(query.limit or MAX_RESULTS, MAX_RESULTS)
                return await search(
                    conn, query, limit=limit, offset=query.offset, count_limit=COUNT_LIMIT
                )

            queries = [(name, to_query(path, params)) for name, path, params in shapes]
            for name, query in queries:
                answers = {way: await once(query, way) for way in WAYS}
                if len({repr(a) for a in answers.values()}) != 1:
                    raise SystemExit(f"{name}: the ways disagree")
            ways = list(WAYS)
            for round_ in range(args.rounds):
                order = ways[round_ % len(ways) :] + ways[: round_ % len(ways)]
                for name, query in queries:
                    for way in order:
                        for _ in range(2):
                            await once(query, way)
                        started = time.process_time()
                        for _ in range(args.runs):
                            await once(query, way)
                        cost = (time.process_time() - started) / args.runs * 1e6
                        costs[way].setdefault(name, []).append(cost)
            await conn.rollback()
    finally:
        _use(run_shapes)
        await engine.dispose()
    return costs


def report(args: argparse.Namespace, costs: dict[str, dict[str, list[float]]]) -> None:
    ways = list(costs)
    names = list(costs[ways[0]])
    width = max(len(n) for n in names)
    print(f"CPU us/search, median of {args.rounds} rounds of {args.runs} searches")
    print(f"{'shape':<{width}}" + "".join(f"{way:>12}" for way in ways))
    for name in names:
        medians = (statistics.median(costs[way][name]) for way in ways)
        print(f"{name:<{width}}" + "".join(f"{m:>12.0f}" for m in medians))
    means = {
        way: [statistics.mean(v[i] for v in costs[way].values()) for i in range(args.rounds)]
        for way in ways
    }
    print(f"{'mean':<{width}}" + "".join(f"{statistics.median(means[w]):>12.0f}" for w in ways))
    spread = "".join(f"{f'{min(means[w]):.0f}-{max(means[w]):.0f}':>12}" for w in ways)
    print(f"{'(min-max)':<{width}}" + spread)


def main(argv: list[str] | None = None) -> int:
    ap = shape_arguments(__doc__, "a Lightbox index (PostgreSQL or SQLite)")
    ap.add_argument("--runs", type=int, default=30, help="searches per shape and way per round")
    ap.add_argument("--rounds", type=int, default=15, help="rounds over all shapes (median)")
    args = ap.parse_args(argv)
    report(args, asyncio.run(run(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
