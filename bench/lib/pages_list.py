"""The study list's latency (issue 22, performance): pages of ``/`` rendered server-side by a
running ``lightbox serve`` over a large index, p50/p95 per shape, sequential requests.

The index is any Lightbox index (the target: 100,000 studies, ``bench/run.py query build-index
--studies 100000 --series 1 --instances 1`` on PostgreSQL); the server is started here on it,
with a session cookie minted by its own key (as the sign-in page sets one), so the pages are
measured exactly as a signed-in browser gets them: the guard, the session, the QIDO engine, the
template, the security headers, the HTML's bytes read. Shapes: the first page (newest first,
``GET /``, the target <= 150 ms p95), a fuzzy name search, an ID "contains" search, the list
sorted by name, and a deep page (page 40 by date).

    .venv/bin/python bench/run.py web list \\
        --database-url postgresql+asyncpg://postgres@127.0.0.1/lb_qido --requests 200
"""

import argparse
import json
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from lightbox_serve import serving, session_signer

from app.auth.principal import Permission

SHAPES: dict[str, dict[str, str] | None] = {
    "first page (GET /)": None,
    "fuzzy name 'smi jo'": {"patient_name": "smi jo"},
    "patient ID contains '12'": {"patient_id": "12"},
    "sorted by name": {"sort": "name", "current_sort": "date", "current_dir": "desc"},
    "page 40 by date": {"page": "40"},
}


def session_cookie(data_dir: Path) -> str:
    token, _ = session_signer(data_dir).issue(
        "bench", [Permission.READ], name="bench", idp="https://bench.invalid"
    )
    return token


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(base: str, cookie: str, requests: int, warmup: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with httpx.Client(base_url=base, cookies={"lightbox-session": cookie}, timeout=60) as http:
        page = http.get("/")
        page.raise_for_status()
        found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
        if found is None:
            raise SystemExit("the study list carries no CSRF token: not signed in?")
        csrf = found.group(1)
        total = re.search(r"of (?:more than )?<strong>(\d+)</strong>", page.text)
        out["studies"] = int(total.group(1)) if total else None
        for name, form in SHAPES.items():
            times: list[float] = []
            size = 0
            for n in range(warmup + requests):
                started = time.perf_counter()
                if form is None:
                    response = http.get("/")
                else:
                    response = http.post("/", data={"csrf_token": csrf, **form})
                body = response.content
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    raise SystemExit(f"{name}: HTTP {response.status_code}: {response.text[:300]}")
                size = len(body)
                if n >= warmup:
                    times.append(elapsed)
            out[name] = {
                "p50_ms": round(statistics.median(times), 1),
                "p95_ms": round(percentile(times, 0.95), 1),
                "max_ms": round(max(times), 1),
                "bytes": size,
                "requests": len(times),
            }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--database-url", required=True, help="the index to list (migrated)")
    ap.add_argument("--data-dir", help="the server's data dir (default: a temporary one)")
    ap.add_argument("--requests", type=int, default=200, help="measured requests per shape")
    ap.add_argument("--warmup", type=int, default=20, help="requests per shape not measured")
    ap.add_argument("--workers", type=int, default=1, help="server worker processes")
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()

    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="lb-pages-"))
    settings = {"LIGHTBOX_DATABASE_URL": args.database_url, "LIGHTBOX_WORKERS": str(args.workers)}
    with serving(data_dir, **settings) as base:
        figures = measure(base, session_cookie(data_dir), args.requests, args.warmup)
    print(f"study list over {figures.pop('studies')} studies ({args.database_url.split('://')[0]})")
    for name, row in figures.items():
        print(
            f"  {name:28s} p50 {row['p50_ms']:7.1f} ms  p95 {row['p95_ms']:7.1f} ms  "
            f"max {row['max_ms']:7.1f} ms  {row['bytes']:7d} B"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
