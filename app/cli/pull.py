"""``lightbox pull``: migrate a legacy PACS into Lightbox over DIMSE, as a resumable job.

The job lives in the index: stopping the command (Ctrl-C, a kill, a reboot) and running the same
command again continues where it stopped; ``GET /api/jobs/{id}`` shows it from any replica.
"""

import asyncio
import json
import sys
import time
from typing import Annotated, Any

import typer

from app.cli.root import cli, os_actor
from app.config import Settings
from app.errors import LightboxError


def parse_query(values: list[str]) -> list[tuple[str, str]]:
    """``KEY=VALUE`` options as pairs.

    >>> parse_query(["PatientID=P1", "StudyDate=20240101-20241231"])
    [('PatientID', 'P1'), ('StudyDate', '20240101-20241231')]
    """
    pairs = []
    for value in values:
        key, equals, rest = value.partition("=")
        if not equals or not key.strip():
            raise typer.BadParameter(f"{value!r} is not KEY=VALUE (e.g. StudyDate=20240101-)")
        pairs.append((key.strip(), rest))
    return pairs


@cli.command()
def pull(
    source: Annotated[str, typer.Option("--from", help="the AE title to pull from (lightbox ae)")],
    query: Annotated[
        list[str],
        typer.Option(help="a matching key, KEY=VALUE (repeatable): PatientID=P1, StudyDate=2020-"),
    ] = [],  # noqa: B006 (typer's way of giving a list default)
    level: Annotated[str, typer.Option(help="the unit of work: STUDY or SERIES")] = "STUDY",
    method: Annotated[
        str, typer.Option(help="get (C-GET, needs nothing else) or move (C-MOVE to our listener)")
    ] = "get",
    concurrency: Annotated[
        int | None, typer.Option(min=1, max=32, help="studies pulled at once (default: settings)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Pull studies from a legacy PACS: C-FIND, then C-GET (or C-MOVE) each study not held yet.

    Re-running the same command resumes its job; studies already held are skipped.
    """
    from app.dimse.pull import DimsePullSources
    from app.dimse.receive import receive_dir, receiving
    from app.services.container import open_services
    from app.services.pull import PullRequest

    settings = Settings()
    pairs = parse_query(query)
    sources = DimsePullSources.from_settings(settings)
    display = _Display(as_json)

    async def run() -> Any:
        async with open_services(settings, pull_sources=sources) as services:
            request = PullRequest.parse(source, pairs, level, method)
            job = await services.pull.prepare(request, owner=os_actor())
            display.started(job)
            try:
                # received data sets go to files as they arrive, as the listener's do: memory
                # does not grow with the size of an instance
                with receiving(receive_dir(services.ingest.spool_dir)):
                    return await services.pull.run(
                        job.id, concurrency=concurrency, on_progress=display.update
                    )
            finally:
                display.stop()

    try:
        report = asyncio.run(run())
    except LightboxError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        raise typer.Exit(130) from None
    finally:
        sources.close()
    _report(report, as_json)
    raise typer.Exit(0 if report.state == "completed" else 1)


class _Display:
    """The progress bar (rich, on standard error): studies, instances, MB, rate, ETA."""

    def __init__(self, quiet: bool) -> None:
        self._quiet = quiet
        self._progress: Any = None
        self._units: Any = None
        self._instances: Any = None

    def started(self, job: Any) -> None:
        p = job.progress
        if p.units_total:
            print(
                f"resuming job {job.id}: {p.units_done + p.units_skipped} of {p.units_total} "
                "done before",
                file=sys.stderr,
            )
        else:
            print(f"job {job.id}", file=sys.stderr)
        if self._quiet:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description:>9}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._units = self._progress.add_task("studies", total=None, detail="")
        self._instances = self._progress.add_task("instances", total=None, detail="")
        self._progress.start()

    def update(self, p: Any) -> None:
        if self._progress is None:
            return
        elapsed = max(1e-6, time.monotonic() - p.started)
        megabytes = p.fetched_bytes / 1e6
        failed = f", {p.units_failed} failed" if p.units_failed else ""
        self._progress.update(
            self._units, total=p.units_total or None, completed=p.units_finished, detail=failed
        )
        self._progress.update(
            self._instances,
            total=p.instances_total or None,
            completed=p.instances_done,
            detail=f"{megabytes:.1f} MB, {p.fetched / elapsed:.1f}/s "
            f"({megabytes / elapsed:.1f} MB/s)",
        )

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _report(report: Any, as_json: bool) -> None:
    p = report.progress
    failures = [
        {"study": f.study_uid, "series": f.series_uid, "patient": f.patient_id, "error": f.error}
        for f in report.failures
    ]
    if as_json:
        body = {
            "job": report.job_id,
            "state": str(report.state),
            "reason": report.reason,
            "fetched": report.fetched,
            "fetched_bytes": report.fetched_bytes,
            "skipped": report.skipped,
            "elapsed": round(report.elapsed, 3),
            "progress": p.values(),
            "failures": failures,
        }
        print(json.dumps(body, indent=2))
        return
    rate = report.fetched / report.elapsed if report.elapsed else 0.0
    print(
        f"job {report.job_id}: {report.state}"
        + (f" ({report.reason})" if report.reason else "")
        + f"\n  this run: {report.fetched} instances, {report.fetched_bytes / 1e6:.1f} MB in "
        f"{report.elapsed:.1f} s ({rate:.1f}/s); {report.skipped} held already"
        f"\n  in all: {p.units_done} done, {p.units_skipped} held already, {p.units_failed} "
        f"failed of {p.units_total}; {p.instances_stored} instances stored, {p.instances_held} "
        "held already"
    )
    for failure in failures:
        where = failure["series"] or failure["study"]
        print(f"  failed {where} (patient {failure['patient'] or '-'}): {failure['error']}")
