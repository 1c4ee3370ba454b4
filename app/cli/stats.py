"""``lightbox stats``: usage figures of the archive (what ``GET /api/stats`` answers)."""

import asyncio
import json
from typing import Annotated, Any

import typer

from app.cli.root import cli
from app.config import Settings


def human(size: float) -> str:
    """Bytes in binary units.

    >>> human(0), human(1536), human(3 * 1024**3)
    ('0 B', '1.5 KiB', '3.0 GiB')
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


@cli.command()
def stats(
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    largest: Annotated[
        int, typer.Option(min=0, max=100, help="how many of the largest studies to list")
    ] = 10,
) -> None:
    """Studies, series, instances and bytes: totals, by modality, by month received, by
    storage tier, growth, and the largest studies."""

    async def run() -> dict[str, Any]:
        from app.services.container import open_services

        async with open_services(Settings()) as services:
            return (await services.stats.report(largest=largest)).to_json()

    report = asyncio.run(run())
    if as_json:
        print(json.dumps(report, indent=2))
        return
    totals = report["totals"]
    print(
        f"{totals['studies']} studies, {totals['series']} series, {totals['instances']} "
        f"instances, {human(totals['bytes'])}"
    )
    for tier, figures in report["by_tier"].items():
        print(f"storage {tier}: {figures['instances']} instances, {human(figures['bytes'])}")
    for name, figures in report["growth"].items():
        print(
            f"received in the {name.replace('_', ' ')}: {figures['instances']} instances, "
            f"{human(figures['bytes'])}"
        )
    _table(
        "by modality",
        ["modality", "studies", "series", "instances", "size"],
        [
            [
                b["modality"] or "(none)",
                b["studies"],
                b["series"],
                b["instances"],
                human(b["bytes"]),
            ]
            for b in report["by_modality"]
        ],
    )
    _table(
        "by month received",
        ["month", "studies", "instances", "size", "total"],
        [
            [
                b["month"],
                b["studies"],
                b["instances"],
                human(b["bytes"]),
                human(b["cumulative_bytes"]),
            ]
            for b in report["by_month"]
        ],
    )
    _table(
        "largest studies",
        ["study", "date", "modalities", "instances", "size"],
        [
            [
                s["study_uid"],
                s["study_date"] or "",
                "\\".join(s["modalities"]),
                s["instances"],
                human(s["bytes"]),
            ]
            for s in report["largest_studies"]
        ],
    )


def _table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    print(f"\n{title}:")
    if not rows:
        print("  (none)")
        return
    cells = [header, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print(
            "  "
            + "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
