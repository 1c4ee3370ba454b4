"""``lightbox audit``: verify and export the audit trail."""

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.root import audit_cli
from app.config import Settings


@audit_cli.command("verify")
def audit_verify() -> None:
    """Check the audit trail's hash chain; exit status 1 when a row was changed or removed."""

    async def run() -> Any:
        from app.services.container import open_services

        async with open_services(Settings()) as services:
            return await services.audit.verify()

    report = asyncio.run(run())
    print(f"{report.rows} audit events checked")
    if report.pending:
        print(
            f"{report.pending} audit events committed with their writes are not chained yet "
            "(the server chains them; after a crash, when it starts again)"
        )
    for problem in report.problems[:50]:
        print(f"  {problem}")
    print("OK: the chain is intact" if report.ok else "TAMPERING DETECTED")
    sys.exit(0 if report.ok else 1)


@audit_cli.command("export")
def audit_export(
    output: Annotated[Path | None, typer.Option(help="file to write (default: stdout)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or dicom (PS3.15 A.5 XML)")] = "jsonl",
    since: Annotated[str | None, typer.Option(help="from this time (ISO 8601)")] = None,
    until: Annotated[str | None, typer.Option(help="before this time (ISO 8601)")] = None,
) -> None:
    """Export the audit trail in chain order: JSON lines, or DICOM audit messages (XML)."""
    from datetime import datetime

    from app.services.audit import AuditFilter
    from app.services.audit.messages import audit_message

    if fmt not in ("jsonl", "dicom"):
        raise typer.BadParameter("--format is jsonl or dicom")

    def when(value: str | None, name: str) -> datetime | None:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
        except ValueError:
            raise typer.BadParameter(f"{name} is not an ISO 8601 date-time: {value!r}") from None

    filters = AuditFilter(since=when(since, "--since"), until=when(until, "--until"))
    out = output.open("w", encoding="utf-8") if output else sys.stdout

    async def run() -> int:
        from app.services.container import open_services

        n = 0
        async with open_services(Settings()) as services:
            async for row in services.audit.rows(filters):
                line = json.dumps(row, sort_keys=True) if fmt == "jsonl" else audit_message(row)
                out.write(line + "\n")
                n += 1
        return n

    try:
        count = asyncio.run(run())
    finally:
        if output:
            out.close()
    if output:
        print(f"wrote {count} audit events to {output}")
