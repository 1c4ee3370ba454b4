#!/usr/bin/env python3
"""Lightbox's benchmarks, by kind: ingest, query, retrieve, overhead, web, memory, robustness.

    bench/run.py KIND ACTION [ARGS ...]
    bench/run.py KIND --help                   the actions of a kind
    bench/run.py KIND ACTION --help            an action's own arguments
    bench/run.py --dry-run KIND ACTION [ARGS]  print the command only

Each action runs one script of ``bench/lib``: a Python measurement (with ``.venv/bin/python``
when there is one), or a shell script that starts the servers, Orthanc included, and drives
``../shared/bench/load.py`` or wrk, reading its settings from environment variables (listed by
``ACTION --help``).
See bench/README.md for prerequisites, the data sets, and the current figures. Never run a
benchmark beside a build or a test run: the machine has two cores.
"""

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

LIB = Path(__file__).resolve().parent / "lib"
#: the project's virtualenv (``make`` builds it), which has what the measurements import
VENV_PYTHON = LIB.parent.parent / ".venv" / "bin" / "python"


@dataclass(frozen=True)
class Action:
    """One benchmark: the script of ``bench/lib`` that runs it and what it measures."""

    script: str
    summary: str
    #: the ``perf_all.sh`` sections the action may run (all of them unless some are named)
    sections: tuple[str, ...] = ()
    #: arguments the script gets before the user's (a script serving several actions)
    leading: tuple[str, ...] = ()


KINDS: dict[str, tuple[str, dict[str, Action]]] = {
    "ingest": (
        "STOW-RS throughput against Orthanc, and the cost of parsing an instance",
        {
            "stow": Action(
                "stow_vs_orthanc.sh",
                "DATASET BATCH CLIENTS [ROUNDS] [MAX]: fresh Lightbox, Orthanc + PostgreSQL and "
                "Orthanc + SQLite per round; load.py stow, then load.py verify",
            ),
            "parse": Action(
                "parse_speed.py", "DATASET ...: milliseconds per instance of parse_instance"
            ),
        },
    ),
    "query": (
        "QIDO-RS at 100,000 and 1,000,000 instances, against Orthanc",
        {
            "build-index": Action(
                "qido_index.py",
                "a large index written straight into the index tables, plus load.py's manifest",
            ),
            "load": Action(
                "perf_all.sh",
                "[qido1m] [qido100k]: load.py qido at 1M instances and against Orthanc at 100k, "
                "PatientName=*abc* latency",
                sections=("qido1m", "qido100k"),
            ),
            "wildcard": Action("qido_wildcard.py", "p50/p95 of PatientName=*abc* study searches"),
            "explain": Action("qido_explain.py", "EXPLAIN ANALYZE of the SQL of every query shape"),
            "cpu": Action(
                "qido_cpu.py", "in-process CPU per search, per shape; answers digested and compared"
            ),
            "statements": Action(
                "qido_statements.py",
                "in-process CPU per search: the statement cache against SQLAlchemy's own cache",
            ),
        },
    ),
    "retrieve": (
        "WADO-RS, frames, metadata, rendered and thumbnails, against Orthanc and nginx",
        {
            "vs-orthanc": Action(
                "wado_vs_orthanc.sh",
                "[full|tiny]: data sets STOWed into fresh Lightbox and Orthanc per index back "
                "end, load.py wado side by side, one curl stream (and nginx)",
            ),
            "load": Action(
                "perf_all.sh",
                "[wado] [latency] [curl] [render]: the issue 4 and 5 targets against the loaded "
                "bench index and a running Orthanc (load.py wado, latency.py, wrk, curl, render)",
                sections=("wado", "latency", "curl", "render"),
            ),
            "latency": Action("latency.py", "p50/p95 of GETs with the body read and discarded"),
            "viewers": Action(
                "viewers.py",
                "simulated OHIF viewers (a keep-alive pool each) opening studies: per-request "
                "p50/p95, study-open and first-image times; compares process managers",
            ),
            "render": Action(
                "render_vs_orthanc.py", "/rendered uncached and cached, series thumbnails"
            ),
            "cpu": Action(
                "retrieve_cpu.py", "in-process CPU per frame, rendering, instance, study retrieve"
            ),
        },
    ),
    "overhead": (
        "what access control, the audit trail, the metrics and the access log cost per request",
        {
            "wrk": Action(
                "perf_all.sh",
                "auth + audit on against off on the same index, alternating wrk rounds "
                "(ON_OFF_ROUNDS, OVERHEAD_FRESH, OVERHEAD_WRK, OVERHEAD_LOADPY)",
                sections=("overhead",),
            ),
            "simultaneous": Action(
                "simultaneous.sh",
                "qido|frames ROUNDS CONNECTIONS SPEC ...: configurations under load in the same "
                "10 s (SEQUENTIAL=1: in turns)",
            ),
            "inprocess": Action(
                "request_overhead.py",
                "in-process CPU per request, on / off / auth / audit / observed (metrics and "
                "JSON access log)",
            ),
            "observe": Action(
                "observe_overhead.sh",
                "[ROUNDS] [CONNECTIONS]: metrics + JSON access log on against off, QIDO under "
                "wrk in the same run, the metrics port scraped (SCRAPE, KIND, AA=1: A/A)",
            ),
            "audit-writer": Action(
                "audit_writer.py", "CPU per audit event of the batching writer, per batch size"
            ),
            "revisions": Action(
                "revisions.sh",
                "REV [REV ...]: git revisions side by side with Orthanc in one run (STOW, QIDO, "
                "study metadata, series and study retrieve, instance, frames; PostgreSQL)",
            ),
        },
    ),
    "dimse": (
        "DIMSE against Orthanc: C-STORE ingest, C-FIND latency, C-MOVE throughput",
        {
            "store": Action(
                "dimse_vs_orthanc.sh",
                "DATASET [CLIENTS] [ROUNDS] [MAX]: storescu over CLIENTS associations into a fresh "
                "Lightbox, Orthanc + PostgreSQL, Orthanc + SQLite; Lightbox's STOW-RS rate on the "
                "same data; load.py verify; peak RSS",
                leading=("store",),
            ),
            "find": Action(
                "dimse_find.py",
                "--dataset DIR --target NAME=AET@HOST:PORT ...: study-level C-FIND latency at one "
                "association, counts checked",
            ),
            "find-vs-orthanc": Action(
                "dimse_vs_orthanc.sh",
                "DATASET [REQUESTS]: the data set STOWed into a fresh Lightbox and Orthanc + "
                "PostgreSQL, then the same study-level C-FINDs to both (dimse_find.py)",
                leading=("find-vs-orthanc",),
            ),
            "move": Action(
                "dimse_vs_orthanc.sh",
                "DATASET [ROUNDS]: movescu of a 1,000-instance series to a local storescp, "
                "Lightbox and Orthanc + PostgreSQL, MB/s",
                leading=("move",),
            ),
        },
    ),
    "operations": (
        "the PACS manager's bulk tools: lightbox import and ZIP export",
        {
            "import": Action(
                "import_export.sh",
                "DATASET [MAX] [ORTHANC_MAX] [JOBS]: lightbox import (no HTTP hop; peak RSS and "
                "PSS of its process tree; PROCESSES) "
                "against our STOW-RS and Orthanc's REST importer, in one run",
                leading=("import",),
            ),
            "export": Action(
                "import_export.sh",
                "DATASET: a large study as a ZIP (Accept: application/zip), MB/s and peak RSS",
                leading=("export",),
            ),
        },
    ),
    "web": (
        "the pages (issue 22): the study list over a large index, the built-in viewer in Chromium",
        {
            "list": Action(
                "pages_list.py",
                "--database-url URL [--requests N]: p50/p95 of the study list's pages (first "
                "page, searches, sorted, deep page) from a lightbox serve on that index",
            ),
            "viewer": Action(
                "viewer_browser.py",
                "[--slices 200] [--size 512] [--rounds 5]: click to first image and images/s "
                "scrolling once prefetched, in Chromium with the Performance API",
            ),
        },
    ),
    "memory": (
        "server memory while a large request streams (a 2 GB retrieve is a test: "
        "tests/e2e/test_wado_memory.py)",
        {
            "stow": Action(
                "big_stow.py", "one STOW-RS request of N large parts; peak RSS of the server tree"
            ),
        },
    ),
    "robustness": (
        "malformed input: the property tests of tests/fuzz with a long budget",
        {
            "fuzz": Action(
                "fuzz.py",
                "[--examples N] [--api-examples N] [--databases D,D] [--budget S] [--seed N] "
                "[-- PYTEST_ARGS]: parsers, round trips and schemathesis over openapi.json, "
                "random examples, stopped after --budget seconds",
            ),
        },
    ),
}


def command(action: Action, args: list[str]) -> list[str]:
    """The command line that runs ``action`` with ``args``."""
    path = LIB / action.script
    if action.sections:
        unknown = [a for a in args if a not in action.sections]
        if unknown:
            raise SystemExit(
                f"unknown section {' '.join(unknown)}: choose from {' '.join(action.sections)}"
            )
        return ["bash", str(path), *(args or action.sections)]
    args = [*action.leading, *args]
    if path.suffix == ".sh":
        return ["bash", str(path), *args]
    python = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable
    return [python, str(path), *args]


def shell_usage(path: Path) -> str:
    """The comment block at the top of a shell script: its usage and settings."""
    lines = []
    for line in path.read_text().splitlines()[1:]:
        if not line.startswith("#"):
            break
        lines.append(line[2:] if line.startswith("# ") else line[1:])
    return "\n".join(lines)


def _actions_table(actions: dict[str, Action]) -> str:
    return "actions:\n" + "\n".join(
        f"  {name:<14} {a.summary} ({a.script})" for name, a in actions.items()
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dry-run", action="store_true", help="print the command, run nothing")
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind, (summary, actions) in KINDS.items():
        sub = kinds.add_parser(
            kind,
            help=summary,
            description=f"{summary}\n\n{_actions_table(actions)}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument("action", choices=actions, metavar="ACTION")
        sub.add_argument("args", nargs=argparse.REMAINDER, help="passed on (ACTION --help)")
    ns = parser.parse_args(argv)
    action = KINDS[ns.kind][1][ns.action]
    args: list[str] = ns.args
    if action.script.endswith(".sh") and ({"-h", "--help"} & set(args)):
        # the shell scripts take positional arguments only: never start one to show its usage
        print(shell_usage(LIB / action.script))
        return 0
    argv_out = command(action, args)
    if ns.dry_run:
        print(" ".join(argv_out))
        return 0
    sys.stdout.flush()
    os.execvp(argv_out[0], argv_out)


if __name__ == "__main__":
    sys.exit(main())
