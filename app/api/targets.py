"""The resource a route names: FastAPI dependencies building a Target, and per-level route tables.

DICOMweb names a resource by the same path segments everywhere (PS3.18 Tables 10.4.1-1..3 and
10.6.1-2): ``/studies/{study}``, ``/series/{series}``, ``/instances/{instance}``,
``/frames/{frames}``. The dependencies here turn them into one
:class:`~app.dicom.target.Target` (400 naming the first malformed segment, GEN-02, FRM-01), and
:func:`add_level_routes` registers one endpoint at each level of a table: the levels differ in
their path, operation id, summary and documented responses, not in their code.

An endpoint is made per level by a factory taking the level's dependency, so FastAPI sees (and
OpenAPI documents) exactly the path parameters of that level, in path order, before the
endpoint's own query parameters; the target is built before the endpoint's other dependencies
declared after it.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from fastapi import APIRouter, Depends, Path
from starlette.responses import Response

from app.dicom.target import Level, Target

__all__ = [
    "PATHS",
    "LevelRoute",
    "add_level_routes",
    "described_targets",
    "targets",
]

#: the path of each level below the service root
PATHS: Final = {
    Level.STUDY: "/studies/{study}",
    Level.SERIES: "/studies/{study}/series/{series}",
    Level.INSTANCE: "/studies/{study}/series/{series}/instances/{instance}",
    Level.FRAMES: "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
}


async def study_target(study: str) -> Target:
    return Target.from_path(study)


async def series_target(study: str, series: str) -> Target:
    return Target.from_path(study, series)


async def instance_target(study: str, series: str, instance: str) -> Target:
    return Target.from_path(study, series, instance)


async def frames_target(study: str, series: str, instance: str, frames: str) -> Target:
    return Target.from_path(study, series, instance, frames)


_StudyUID = Path(description="Study Instance UID")
_SeriesUID = Path(description="Series Instance UID")


async def described_study_target(study: str = _StudyUID) -> Target:
    return Target.from_path(study)


async def described_series_target(study: str = _StudyUID, series: str = _SeriesUID) -> Target:
    return Target.from_path(study, series)


#: the dependency building each level's target (``target: Target = targets[level]``)
targets: Final[Mapping[Level, Any]] = {
    Level.STUDY: Depends(study_target),
    Level.SERIES: Depends(series_target),
    Level.INSTANCE: Depends(instance_target),
    Level.FRAMES: Depends(frames_target),
}
#: the same, with the UIDs described in OpenAPI (the search routes document them)
described_targets: Final[Mapping[Level, Any]] = {
    Level.STUDY: Depends(described_study_target),
    Level.SERIES: Depends(described_series_target),
}


@dataclass(frozen=True, slots=True)
class LevelRoute:
    """One row of a route table: a level, its operation id and summary, and what differs."""

    level: Level
    operation_id: str
    summary: str
    #: documented responses at this level (None: the table's own)
    responses: dict[int | str, dict[str, Any]] | None = None
    #: extra route options at this level (``status_code``, ...)
    options: dict[str, Any] = field(default_factory=dict)


#: an endpoint factory: a level's target dependency in, the endpoint out
EndpointFactory = Callable[[Any], Callable[..., Any]]


def add_level_routes(
    router: APIRouter,
    suffix: str,
    table: Sequence[LevelRoute],
    endpoint: EndpointFactory,
    *,
    method: str = "GET",
    responses: dict[int | str, dict[str, Any]] | None = None,
    target_dependencies: Mapping[Level, Any] = targets,
    **options: Any,
) -> None:
    """Register ``endpoint(dependency)`` at ``PATHS[level] + suffix`` for each row.

    ``dependency`` builds the level's :class:`Target` (``target: Target = dependency`` in the
    endpoint's signature, where it is checked before the endpoint's own parameters). Every
    route answers with a :class:`Response` it builds itself.
    """
    for row in table:
        router.add_api_route(
            PATHS[row.level] + suffix,
            endpoint(target_dependencies[row.level]),
            methods=[method],
            operation_id=row.operation_id,
            summary=row.summary,
            responses=row.responses if row.responses is not None else responses,
            response_class=Response,
            **{**options, **row.options},
        )
