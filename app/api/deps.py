"""FastAPI dependencies as ``Annotated`` aliases (STYLE.md C2)."""

from typing import Annotated

from fastapi import Depends, Request

from app.config import Settings
from app.services.container import Services


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


ServicesDep = Annotated[Services, Depends(_services)]
SettingsDep = Annotated[Settings, Depends(_settings)]
