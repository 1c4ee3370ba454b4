"""``lightbox fsck`` and ``lightbox gc``: index and blob store housekeeping."""

import asyncio
import json
import sys
from datetime import timedelta
from typing import Annotated, Any

import typer

from app.cli.root import cli
from app.config import Settings


@cli.command()
def fsck(
    quick: Annotated[bool, typer.Option(help="skip re-hashing blob contents")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Check that index rows and blobs agree; exit status 1 when they do not."""

    async def run() -> Any:
        from app.services.container import open_services

        async with open_services(Settings()) as services:
            return await services.maintenance.fsck(verify_hashes=not quick)

    report = asyncio.run(run())
    summary = {
        "rows_checked": report.rows_checked,
        "blobs_checked": report.blobs_checked,
        "missing_blobs": report.missing_blobs,
        "size_mismatches": report.size_mismatches,
        "hash_mismatches": report.hash_mismatches,
        "unreferenced_blobs": report.unreferenced_blobs,
        "ok": report.ok,
    }
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"rows checked {report.rows_checked}, blobs checked {report.blobs_checked}")
        for label in ("missing_blobs", "size_mismatches", "hash_mismatches", "unreferenced_blobs"):
            items = summary[label]
            assert isinstance(items, list)
            print(f"{label.replace('_', ' ')}: {len(items)}")
            for item in items[:20]:
                print(f"  {item}")
        print("OK" if report.ok else "PROBLEMS FOUND")
    sys.exit(0 if report.ok else 1)


@cli.command()
def gc(
    grace_minutes: Annotated[
        int, typer.Option(help="keep unreferenced blobs younger than this")
    ] = 60,
    dry_run: Annotated[bool, typer.Option(help="only list what would be removed")] = False,
) -> None:
    """Remove blobs that no index row references (left by crashes), after a grace period."""

    async def run() -> Any:
        from app.services.container import open_services

        async with open_services(Settings()) as services:
            return await services.maintenance.gc(
                grace=timedelta(minutes=grace_minutes), dry_run=dry_run
            )

    report = asyncio.run(run())
    verb = "would remove" if dry_run else "removed"
    print(
        f"scanned {report.scanned} blobs; {verb} {len(report.removed)};"
        f" kept {report.kept_young} younger than the grace period;"
        f" {report.temp_files_removed} stale temp files"
    )
