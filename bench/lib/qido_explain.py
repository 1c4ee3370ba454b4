"""EXPLAIN ANALYZE of the SQL Lightbox runs for each ``load.py qido`` query shape.

Every template of ``../shared/bench/load.py``'s QIDO mix (once each, same seed), plus the
``PatientName=*abc*`` substring search of the issue and OHIF's study list, goes through the
application's own parser (``app.dicom.query.parse_qido``) and SQL builder
(``app.index.search.page_statement`` / ``count_statement``), exactly as a request would; each
statement is then run under ``EXPLAIN (ANALYZE, BUFFERS)`` on the given PostgreSQL index. The
count statement is shown only for shapes whose page comes back full (the only case it runs).

    .venv/bin/python bench/run.py query explain \\
        --database-url postgresql+asyncpg://postgres@127.0.0.1/lb_qido --dataset DIR
"""

import argparse
import asyncio
import importlib.util
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from app.dicom.query import Query, Resource, parse_qido
from app.index.search import count_statement, page_statement

#: ../shared/bench/load.py beside the repository (bench/lib/ is two levels down)
DEFAULT_LOAD = Path(__file__).resolve().parents[3] / "shared" / "bench" / "load.py"
MAX_RESULTS = 1000
COUNT_LIMIT = 10000  # LIGHTBOX_QIDO_COUNT_LIMIT's default


def load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("dicomweb_load", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["dicomweb_load"] = module
    spec.loader.exec_module(module)
    return module


def to_query(path: str, params: list[tuple[str, str]]) -> Query:
    """The :class:`Query` the route for ``path`` would build."""
    parts = path.strip("/").split("/")
    if parts == ["studies"]:
        return parse_qido(params, resource=Resource.STUDIES)
    if parts == ["series"]:
        return parse_qido(params, resource=Resource.SERIES)
    if parts == ["instances"]:
        return parse_qido(params, resource=Resource.INSTANCES)
    if len(parts) == 3 and parts[2] == "series":
        return parse_qido(params, resource=Resource.STUDY_SERIES, study_uid=parts[1])
    if len(parts) == 3 and parts[2] == "instances":
        return parse_qido(params, resource=Resource.STUDY_INSTANCES, study_uid=parts[1])
    if len(parts) == 5 and parts[4] == "instances":
        return parse_qido(
            params, resource=Resource.SERIES_INSTANCES, study_uid=parts[1], series_uid=parts[3]
        )
    raise ValueError(path)


PG_DIALECT: Any = postgresql.dialect


def sql(stmt: Any) -> str:
    compiled = stmt.compile(dialect=PG_DIALECT(), compile_kwargs={"literal_binds": True})
    return str(compiled)


async def explain(conn: AsyncConnection, statement: str) -> list[str]:
    result = await conn.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + statement))
    return [row[0] for row in result]


async def timed(conn: AsyncConnection, statement: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await conn.execute(text(statement))
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def qido_shapes(
    load_path: str, dataset_dir: str, seed: int
) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """One ``(name, path, params)`` per template of ``load.py``'s QIDO mix (its first query
    with ``seed``), plus the ``PatientName=*abc*`` substring search and OHIF's study list."""
    load = load_module(Path(load_path))
    dataset = load.DatasetIndex(dataset_dir)
    shapes: list[tuple[str, str, list[tuple[str, str]]]] = []
    seen: set[str] = set()
    for name, path, params, _, _ in load.build_qido_queries(dataset, 12, seed):
        if name not in seen:
            seen.add(name)
            shapes.append((name, path, params))
    family = dataset.study_list[0]["patient_name"].split("^")[0]
    shapes.append(
        ("study_by_patient_name_substring", "studies", [("PatientName", f"*{family[1:4]}*")])
    )
    shapes.append(
        (
            "ohif_study_list",
            "studies",
            [
                ("limit", "101"),
                ("offset", "0"),
                ("fuzzymatching", "false"),
                ("includefield", "00081030,00080060,00080090,00100030"),
                ("PatientName", f"*{family[1:4]}*"),
                ("00100020", "*"),
                ("StudyDate", "20100101-20241231"),
                ("ModalitiesInStudy", ""),
            ],
        )
    )
    return shapes


async def run(args: argparse.Namespace) -> None:
    shapes = qido_shapes(args.load, args.dataset, args.seed)
    engine = create_async_engine(args.database_url)
    try:
        async with engine.connect() as conn:
            for name, path, params in shapes:
                query = to_query(path, params)
                cap = 10000 if path.endswith("instances") else MAX_RESULTS
                limit = min(query.limit or cap, cap)
                page = sql(page_statement(query, limit=limit, offset=query.offset, sqlite=False))
                rows = len((await conn.execute(text(page))).all())
                print(f"\n### {name}: GET /{path}?{'&'.join(f'{k}={v}' for k, v in params)}")
                print(f"page: {rows} rows, median {await timed(conn, page, args.runs):.2f} ms\n")
                print("```")
                print("\n".join(await explain(conn, page)))
                print("```")
                if rows == limit:
                    cap = max(COUNT_LIMIT, query.offset + limit)
                    count = sql(count_statement(query, sqlite=False, cap=cap))
                    print(f"\ncount: median {await timed(conn, count, args.runs):.2f} ms\n")
                    print("```")
                    print("\n".join(await explain(conn, count)))
                    print("```")
    finally:
        await engine.dispose()


def shape_arguments(doc: str | None, database: str) -> argparse.ArgumentParser:
    """A parser with the arguments that choose the index and the query shapes."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--database-url", required=True, help=database)
    ap.add_argument("--dataset", required=True, help="manifest directory (qido_index.py --out)")
    ap.add_argument("--load", default=str(DEFAULT_LOAD), help="path of load.py")
    ap.add_argument("--seed", type=int, default=7, help="load.py's query seed (default 7)")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = shape_arguments(__doc__, "a PostgreSQL Lightbox index")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per statement (default 5)")
    args = ap.parse_args(argv)
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
