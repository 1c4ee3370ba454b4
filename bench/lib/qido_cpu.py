"""In-process CPU time per QIDO-RS request, per ``load.py qido`` query shape (issue 3).

Each shape of :func:`qido_explain.qido_shapes` (the ``load.py qido`` templates, the
``PatientName=*abc*`` substring search and OHIF's study list) is sent ``--runs`` times through
the whole application (``create_app`` over an ``httpx`` ASGI transport, access control off) on
the given index; the CPU time of this process (``time.process_time``: routing, parsing, SQL
building, the driver's side of the database round trip, JSON) is divided by the number of
requests. The database server's own CPU is not counted. Every response is checked against the
first one of its shape (same status, headers and body, the request id aside), and with
``--answers FILE`` their digests are saved (first run) or compared (later runs), so a faster
path that changed an answer would show. ``--mode service`` measures ``QueryService.search`` alone.

    .venv/bin/python bench/run.py query cpu \\
        --database-url postgresql+asyncpg://postgres@127.0.0.1/lb_qido_helper --dataset DIR
"""

import argparse
import asyncio
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from qido_explain import qido_shapes, shape_arguments, to_query

from app.config import AuthSettings, Settings
from app.main import create_app
from app.services.container import open_services


def _answer(r: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    """What a response says (its per-request id aside)."""
    headers = [(k, v) for k, v in r.headers.multi_items() if k != "x-request-id"]
    return r.status_code, headers, r.content


def _digest(answer: tuple[int, list[tuple[str, str]], bytes]) -> str:
    status, headers, body = answer
    return hashlib.sha256(repr((status, headers)).encode() + body).hexdigest()


def _url(path: str, params: list[tuple[str, str]]) -> str:
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params)
    return f"/dicom-web/{path}" + (f"?{query}" if query else "")


async def run(args: argparse.Namespace) -> tuple[dict[str, list[float]], dict[str, str]]:
    shapes = qido_shapes(args.load, args.dataset, args.seed)
    if args.only:
        shapes = [shape for shape in shapes if shape[0] in args.only]
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            database_url=args.database_url,
            data_dir=Path(tmp),
            auto_migrate=False,
            auth=AuthSettings(enabled=False),
            log_level="warning",
        )
        async with open_services(settings) as services:
            app = create_app(settings, services=services)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
                costs: dict[str, list[float]] = {}
                answers: dict[str, str] = {}
                for _ in range(args.rounds):
                    for name, path, params in shapes:
                        url = _url(path, params)
                        query = to_query(path, params)
                        if args.mode == "service":
                            for _ in range(3):
                                await services.query.search(query, "http://bench/dicom-web")
                            started = time.process_time()
                            for _ in range(args.runs):
                                await services.query.search(query, "http://bench/dicom-web")
                        else:
                            expected = _answer(await http.get(url))
                            answers[name] = _digest(expected)
                            for _ in range(2):
                                await http.get(url)
                            started = time.process_time()
                            for _ in range(args.runs):
                                if _answer(await http.get(url)) != expected:
                                    raise SystemExit(f"{name}: response changed between runs")
                        cost = (time.process_time() - started) / args.runs * 1e6
                        costs.setdefault(name, []).append(cost)
    return costs, answers


def report(
    args: argparse.Namespace, costs: dict[str, list[float]], answers: dict[str, str]
) -> None:
    width = max(len(n) for n in costs)
    print(f"{'shape':<{width}}  CPU us/request (median of {args.rounds} rounds)")
    medians = []
    for name, values in costs.items():
        median = statistics.median(values)
        medians.append(median)
        print(f"{name:<{width}}  {median:8.0f}")
    print(f"{'mean':<{width}}  {statistics.mean(medians):8.0f}")
    if args.answers and answers:
        saved = Path(args.answers)
        if saved.exists():
            before = json.loads(saved.read_text())
            changed = [n for n, d in answers.items() if before.get(n) != d]
            print("answers: " + (f"CHANGED {changed}" if changed else f"identical to {saved}"))
        else:
            saved.write_text(json.dumps(answers, indent=1))
            print(f"answers saved to {saved}")


def main(argv: list[str] | None = None) -> int:
    ap = shape_arguments(__doc__, "a Lightbox index (PostgreSQL or SQLite)")
    ap.add_argument("--runs", type=int, default=200, help="requests per shape per round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds over all shapes (median)")
    ap.add_argument(
        "--answers",
        help="JSON file of response digests per shape: written if missing, else compared",
    )
    ap.add_argument("--only", action="append", help="measure only this shape (repeatable)")
    ap.add_argument("--mode", choices=("route", "service"), default="route")
    args = ap.parse_args(argv)
    report(args, *asyncio.run(run(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
