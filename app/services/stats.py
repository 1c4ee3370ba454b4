"""Usage figures of the archive (``lightbox stats``, ``GET /api/stats``, issue 23 point 6):
totals; studies, series, instances and bytes by modality, by month received and by storage
tier; growth; the largest studies. No patient data: studies are named by their UID.

The figures come from aggregate queries (:mod:`app.index.stats`), read in one unit of work.
"""

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from app.index.db import Database
from app.index.stats import (
    Bucket,
    LargeStudy,
    Totals,
    by_modality,
    by_month,
    largest_studies,
    prepare,
    received_since,
    totals,
)

__all__ = ["StatsReport", "StatsService"]


@dataclass(frozen=True, slots=True)
class StatsReport:
    """What ``lightbox stats`` prints and ``/api/stats`` answers."""

    generated: datetime
    totals: Totals
    by_modality: list[Bucket]
    by_month: list[Bucket]
    #: storage tier (the object store's kind) -> its instances and bytes
    by_tier: dict[str, dict[str, int]]
    #: instances and bytes received in the last 30 and 365 days
    growth: dict[str, dict[str, int]]
    largest: list[LargeStudy]

    def to_json(self) -> dict[str, Any]:
        """The report as JSON values (months' cumulative bytes added)."""
        cumulative = 0
        months = []
        for bucket in self.by_month:
            cumulative += bucket.bytes
            months.append({**_bucket(bucket, "month"), "cumulative_bytes": cumulative})
        return {
            "generated": self.generated.isoformat().replace("+00:00", "Z"),
            "totals": asdict(self.totals),
            "by_modality": [_bucket(b, "modality") for b in self.by_modality],
            "by_month": months,
            "by_tier": self.by_tier,
            "growth": self.growth,
            "largest_studies": [
                {
                    "study_uid": s.study_uid,
                    "study_date": s.study_date.isoformat() if s.study_date else None,
                    "modalities": list(s.modalities),
                    "series": s.series,
                    "instances": s.instances,
                    "bytes": s.bytes,
                }
                for s in self.largest
            ],
        }


def _bucket(bucket: Bucket, key: str) -> dict[str, Any]:
    values = asdict(bucket)
    values[key] = values.pop("key")
    return values


class StatsService:
    """Figures of one index; its instances all live in one store, of kind ``tier``."""

    def __init__(self, db: Database, tier: str) -> None:
        self._db = db
        self._tier = tier

    async def report(self, *, largest: int = 10, now: datetime | None = None) -> StatsReport:
        """The figures as of now (``largest``: how many of the largest studies to list)."""
        now = now or datetime.now(UTC)
        async with self._db.read() as conn:
            await prepare(conn)
            total = await totals(conn)
            modalities = await by_modality(conn)
            months = await by_month(conn)
            growth = {}
            for name, days in (("last_30_days", 30), ("last_365_days", 365)):
                instances, size = await received_since(conn, now - timedelta(days=days))
                growth[name] = {"instances": instances, "bytes": size}
            top = await largest_studies(conn, max(0, largest)) if largest > 0 else []
        return StatsReport(
            generated=now,
            totals=total,
            by_modality=modalities,
            by_month=months,
            by_tier={self._tier: {"instances": total.instances, "bytes": total.bytes}},
            growth=growth,
            largest=top,
        )
