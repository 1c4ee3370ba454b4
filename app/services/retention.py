"""Retention: delete the studies that rules select (``lightbox retention``, and on a schedule
inside ``lightbox serve``; issue 23 point 6).

A run counts what the rules select first (:meth:`RetentionService.plan`). It is refused, unless
confirmed (``--yes``), when that is every study of the archive, or more than ``max_fraction``
of them: a rule typed with a wrong unit or a missing criterion must not empty the archive. A
dry run stops there. Otherwise each selected study is deleted through the delete service, as a
``DELETE`` of the study would be (index rows, then blobs; tombstones; DEL-03's audit row,
committed with the delete, naming the rule), in row order, one study at a time; studies stored
after the count are left for the next run. Every run, dry, refused or real, leaves one
``retention`` row in the audit trail saying what it found and did.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from app.dicom.target import Target
from app.errors import NotFound
from app.index.db import Database
from app.index.retention import Criteria, Selection, count_studies, select_page, selection
from app.services.audit import AuditLog, AuditRecord, Outcome
from app.services.delete import DeleteService
from app.services.metrics import record_retention

__all__ = ["RetentionOutcome", "RetentionPlan", "RetentionRule", "RetentionService"]

log = logging.getLogger(__name__)

_PAGE = 200


@dataclass(frozen=True, slots=True)
class RetentionRule:
    """A rule as plain values (``app.config.RetentionRule`` is its settings form)."""

    older_than_days: int
    modality: str | None = None
    study_description: str | None = None

    def describe(self) -> str:
        """The rule in words.

        >>> RetentionRule(365, "SR").describe()
        'older than 365 days, modality SR'
        """
        parts = [f"older than {self.older_than_days} days"]
        if self.modality:
            parts.append(f"modality {self.modality}")
        if self.study_description:
            parts.append(f"study description {self.study_description!r}")
        return ", ".join(parts)

    def criteria(self, today: date) -> Criteria:
        return Criteria(
            before=today - timedelta(days=self.older_than_days),
            modality=self.modality,
            description=self.study_description,
        )


@dataclass(frozen=True, slots=True)
class RetentionPlan:
    """What the rules select now, in all and rule by rule."""

    rules: tuple[RetentionRule, ...]
    total_studies: int
    selected: Selection
    per_rule: tuple[int, ...]
    max_fraction: float

    @property
    def refusal(self) -> str | None:
        """Why running it needs a confirmation, if it does."""
        chosen, total = self.selected.studies, self.total_studies
        if chosen == 0:
            return None
        if chosen >= total:
            return f"the rules select every study of the archive ({chosen})"
        if chosen > self.max_fraction * total:
            return (
                f"the rules select {chosen} of {total} studies, more than the threshold "
                f"({self.max_fraction:.0%}, retention.max_fraction)"
            )
        return None

    def describe(self) -> str:
        rules = "; ".join(
            f"{rule.describe()}: {count}"
            for rule, count in zip(self.rules, self.per_rule, strict=True)
        )
        s = self.selected
        return (
            f"{s.studies} of {self.total_studies} studies ({s.instances} instances, "
            f"{s.bytes} bytes) by rules [{rules}]"
        )


@dataclass(slots=True)
class RetentionOutcome:
    """What a run did."""

    plan: RetentionPlan
    dry_run: bool
    refused: str | None = None
    deleted_studies: int = 0
    deleted_instances: int = 0
    failed: list[str] = field(default_factory=list)  # StudyInstanceUIDs not deleted


class RetentionService:
    """Runs retention rules over one index through the delete service."""

    def __init__(
        self, db: Database, delete: DeleteService, audit: AuditLog, *, max_fraction: float = 0.5
    ) -> None:
        self._db = db
        self._delete = delete
        self._audit = audit
        self._max_fraction = max_fraction

    async def plan(
        self, rules: Sequence[RetentionRule], *, today: date | None = None
    ) -> RetentionPlan:
        """Count what ``rules`` select (nothing is deleted)."""
        today = today or datetime.now(UTC).date()
        criteria = [rule.criteria(today) for rule in rules]
        async with self._db.read() as conn:
            total = await count_studies(conn)
            selected = await selection(conn, criteria)
            per_rule = tuple([(await selection(conn, [c])).studies for c in criteria])
        return RetentionPlan(tuple(rules), total, selected, per_rule, self._max_fraction)

    async def run(
        self,
        rules: Sequence[RetentionRule],
        *,
        actor: str,
        dry_run: bool = False,
        confirmed: bool = False,
        today: date | None = None,
    ) -> RetentionOutcome:
        """Apply ``rules`` (see the module's docstring); ``actor`` names who runs them in the
        audit trail."""
        if not rules:
            raise ValueError("no retention rule given")
        today = today or datetime.now(UTC).date()
        plan = await self.plan(rules, today=today)
        outcome = RetentionOutcome(plan, dry_run)
        if plan.refusal is not None and not confirmed:
            outcome.refused = plan.refusal
            await self._record(
                actor, Outcome.FAILURE, 0, f"refused: {plan.refusal}; {plan.describe()}"
            )
            log.warning("retention refused: %s", plan.refusal)
            return outcome
        if dry_run or plan.selected.studies == 0:
            verb = "dry run, would delete" if dry_run else "nothing to delete:"
            await self._record(actor, Outcome.SUCCESS, 0, f"{verb} {plan.describe()}")
            return outcome
        await self._delete_selected(rules, today, plan, outcome, actor)
        record_retention(outcome.deleted_studies, outcome.deleted_instances)
        await self._record(
            actor,
            Outcome.SUCCESS if not outcome.failed else Outcome.FAILURE,
            outcome.deleted_studies,
            f"deleted {outcome.deleted_studies} studies ({outcome.deleted_instances} instances)"
            f", {len(outcome.failed)} failed, of {plan.describe()}",
        )
        log.info(
            "retention deleted %d studies (%d instances); %d failed",
            outcome.deleted_studies,
            outcome.deleted_instances,
            len(outcome.failed),
        )
        return outcome

    async def _delete_selected(
        self,
        rules: Sequence[RetentionRule],
        today: date,
        plan: RetentionPlan,
        outcome: RetentionOutcome,
        actor: str,
    ) -> None:
        criteria = [rule.criteria(today) for rule in rules]
        why = "retention: " + "; ".join(rule.describe() for rule in rules)
        after = 0
        while True:
            async with self._db.read() as conn:
                page = await select_page(
                    conn, criteria, after_id=after, last_id=plan.selected.last_id, limit=_PAGE
                )
            if not page:
                return
            for row_id, study_uid in page:
                after = row_id
                write = self._audit.for_write(actor=actor)
                try:
                    deleted = await self._delete.delete(Target(study_uid), audit=write)
                except NotFound:  # deleted meanwhile by someone else
                    write.release()
                    continue
                except Exception as exc:  # an unavailable index or store: the next run retries
                    write.release()
                    log.error("retention could not delete a study: %s", exc)
                    outcome.failed.append(study_uid)
                    continue
                outcome.deleted_studies += 1
                outcome.deleted_instances += deleted.instances
                # the study's row in the trail, standing for the one its delete committed
                await self._audit.record(
                    AuditRecord(
                        action="delete",
                        outcome=Outcome.SUCCESS,
                        actor=actor,
                        study_uid=study_uid,
                        patient_id=deleted.patient_id,
                        count=deleted.instances,
                        detail=why,
                        supersedes=write.release(),
                    )
                )

    async def _record(self, actor: str, outcome: str, count: int, detail: str) -> None:
        await self._audit.record(
            AuditRecord(
                action="retention", outcome=outcome, actor=actor, count=count, detail=detail
            )
        )
