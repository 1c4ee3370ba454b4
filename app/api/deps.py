"""FastAPI dependencies as ``Annotated`` aliases (STYLE.md C2)."""

from typing import Annotated

from fastapi import Depends, Request

from app.auth.principal import Principal
from app.config import Settings
from app.dicom.query import StudyRestriction
from app.services.container import Services


# Coroutines, not plain functions: FastAPI runs a plain-function dependency in a worker thread,
# a thread hop per dependency on every request of every route.
async def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


ServicesDep = Annotated[Services, Depends(_services)]
SettingsDep = Annotated[Settings, Depends(_settings)]


def _principal(request: Request) -> Principal:
    principal: Principal | None = getattr(request.state, "principal", None)
    if principal is None:  # only anonymous routes run without one; they must not ask
        raise RuntimeError("no authenticated caller on this route")
    return principal


def restriction_of(request: Request) -> StudyRestriction | None:
    return _principal(request).restriction()


#: the authenticated caller (set by ``app.api.security.authorize``)
CallerDep = Annotated[Principal, Depends(_principal)]
#: the caller's scoped grant as a search filter (``None``: sees everything). A search route MUST
#: take it: scoped tokens are refused (403) on routes that name no study and do not.
RestrictionDep = Annotated[StudyRestriction | None, Depends(restriction_of)]
