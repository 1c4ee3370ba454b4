"""Access-control test helpers: settings with auth on, a token maker on the embedded key."""

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from app.auth.keys import LocalSigningKey
from app.auth.verify import TokenIssuer
from app.config import AuthSettings, Settings
from app.main import create_app
from app.services.container import Services, open_services
from tests.conftest import make_settings, truncate

ALL = ("read", "write", "delete", "admin")


def auth_settings(database_url: str, data_dir: Path, **auth: Any) -> Settings:
    """Test settings with access control as in production (on), plus ``auth`` overrides."""
    overrides = {k: v for k, v in auth.items() if k in AuthSettings.model_fields}
    rest = {k: v for k, v in auth.items() if k not in AuthSettings.model_fields}
    return make_settings(database_url, data_dir, auth=AuthSettings(**overrides), **rest)


@dataclass
class Tokens:
    """Issues tokens signed by the settings' embedded key."""

    settings: Settings

    @property
    def issuer(self) -> TokenIssuer:
        key, _ = LocalSigningKey.load_or_create(self.settings.data_dir)
        return TokenIssuer(key, self.settings.auth.local_issuer, self.settings.auth.audience)

    def make(
        self,
        scopes: Sequence[str] = ALL,
        *,
        subject: str = "tester",
        ttl: int = 600,
        studies: Sequence[str] = (),
        patients: Sequence[str] = (),
    ) -> str:
        return self.issuer.issue(subject, scopes, ttl, study_uids=studies, patient_ids=patients)

    def headers(self, scopes: Sequence[str] = ALL, **kwargs: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.make(scopes, **kwargs)}"}


@asynccontextmanager
async def auth_client(
    settings: Settings, *, client_addr: tuple[str, int] = ("127.0.0.1", 50000)
) -> AsyncIterator[tuple[Services, httpx.AsyncClient, Tokens]]:
    """Services (index emptied), an ASGI client without credentials, and a token maker."""
    async with open_services(settings) as services:
        await truncate(services.db)
        app = create_app(settings, services=services)
        transport = httpx.ASGITransport(app=app, client=client_addr)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            yield services, http, Tokens(settings)
