"""``lightbox retention``: delete the studies retention rules select (or only count them)."""

import asyncio
import getpass
import json
import sys
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from app.cli.root import cli
from app.config import RetentionRule, Settings


@cli.command()
def retention(
    older_than_days: Annotated[
        int | None, typer.Option(help="a rule: studies older than this many days (StudyDate)")
    ] = None,
    modality: Annotated[
        str | None, typer.Option(help="... with a series of this modality (with --older-than-days)")
    ] = None,
    study_description: Annotated[
        str | None,
        typer.Option(help="... whose StudyDescription matches this pattern (* and ?, any case)"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="count what would be deleted; delete nothing")
    ] = False,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes",
            help="delete even when the rules select every study, or more than "
            "retention.max_fraction of them",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the outcome as JSON")] = False,
) -> None:
    """Delete studies by rules (the options' one, else LIGHTBOX_RETENTION__RULES) through the
    normal delete path, audited; exit status 1 when refused or when a delete failed."""
    settings = Settings()
    if older_than_days is None and (modality or study_description):
        raise typer.BadParameter("--modality and --study-description refine --older-than-days")
    try:
        rules = (
            [
                RetentionRule(
                    older_than_days=older_than_days,
                    modality=modality,
                    study_description=study_description,
                )
            ]
            if older_than_days is not None
            else list(settings.retention.rules)
        )
    except ValidationError as exc:
        raise typer.BadParameter(exc.errors()[0]["msg"]) from None
    if not rules:
        raise typer.BadParameter(
            "no rule: give --older-than-days (and --modality, --study-description) or set "
            "LIGHTBOX_RETENTION__RULES"
        )

    async def run() -> Any:
        from app.services.container import open_services
        from app.services.retention import RetentionRule as Rule

        plain = [Rule(r.older_than_days, r.modality, r.study_description) for r in rules]
        async with open_services(settings) as services:
            return await services.retention.run(
                plain, actor=f"cli:{getpass.getuser()}", dry_run=dry_run, confirmed=yes
            )

    outcome = asyncio.run(run())
    plan = outcome.plan
    summary = {
        "dry_run": outcome.dry_run,
        "total_studies": plan.total_studies,
        "selected": {
            "studies": plan.selected.studies,
            "instances": plan.selected.instances,
            "bytes": plan.selected.bytes,
        },
        "rules": [
            {"rule": rule.describe(), "studies": count}
            for rule, count in zip(plan.rules, plan.per_rule, strict=True)
        ],
        "refused": outcome.refused,
        "deleted": {"studies": outcome.deleted_studies, "instances": outcome.deleted_instances},
        "failed": outcome.failed,
    }
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        for line in summary["rules"]:
            print(f"rule {line['rule']}: {line['studies']} studies")
        print(f"selected: {plan.describe()}")
        if outcome.refused:
            print(f"REFUSED: {outcome.refused}; run again with --yes to delete them anyway")
        elif outcome.dry_run:
            print("dry run: nothing deleted")
        else:
            print(
                f"deleted {outcome.deleted_studies} studies ({outcome.deleted_instances} "
                f"instances); {len(outcome.failed)} failed"
            )
    sys.exit(1 if outcome.refused or outcome.failed else 0)
