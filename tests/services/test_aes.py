"""Remote AEs: the settings' static list and the index's registry behind one interface."""

import asyncio
from typing import Any

import pytest

from app.config import RemoteAeSettings, Settings
from app.errors import BadRequest, Conflict, NotFound
from app.services.aes import RemoteAe, RemoteAeService
from app.services.container import Services


async def test_configured_peers_are_found_by_exact_title() -> None:
    service = RemoteAeService(
        [
            RemoteAeSettings(ae_title="WORKSTATION", host="10.0.0.5", port=104),
            RemoteAeSettings(ae_title="ARCHIVE", host="pacs.example", port=11112, tls=True),
        ]
    )
    assert await service.get("WORKSTATION") == RemoteAe("WORKSTATION", "10.0.0.5", 104)
    assert await service.get("workstation") is None  # AE titles are case-sensitive
    assert [ae.ae_title for ae in await service.list()] == ["ARCHIVE", "WORKSTATION"]


@pytest.mark.parametrize("title", ["", "   ", "A" * 17, "BACK\\SLASH", "NEW\nLINE"])
def test_invalid_ae_titles_are_refused_in_settings(title: str) -> None:
    with pytest.raises(ValueError, match=r"ae_title|blank|pattern"):
        RemoteAeSettings(ae_title=title, host="h", port=104)
    with pytest.raises(ValueError, match=r"ae_title|blank|pattern"):
        Settings(_env_file=None, dimse={"ae_title": title})


def test_remote_aes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "LIGHTBOX_DIMSE__REMOTE_AES", '[{"ae_title": "CT1", "host": "10.1.1.1", "port": 104}]'
    )
    settings = Settings(_env_file=None)
    assert settings.dimse.remote_aes[0].ae_title == "CT1"
    assert settings.dimse.port == 11112
    assert settings.dimse.host == "127.0.0.1"


def _with_settings_peer(services: Services) -> RemoteAeService:
    """The services' registry, plus a peer of the settings."""
    return RemoteAeService(
        [RemoteAeSettings(ae_title="STATIC", host="10.0.0.9", port=104)], services.db
    )


async def test_registered_peers_merge_with_the_settings(services: Services) -> None:
    aes = _with_settings_peer(services)
    added = await aes.add(" CT_1 ", "ct1.example.org", 104, description="CT room 1")
    assert added == RemoteAe("CT_1", "ct1.example.org", 104, False, "CT room 1", "index")
    await aes.add("ARCHIVE", "::1", 11112, tls=True)
    assert await aes.get("CT_1") == added
    assert (await aes.require("ARCHIVE")).address == "[::1]:11112"
    assert [(ae.ae_title, ae.source) for ae in await aes.list()] == [
        ("ARCHIVE", "index"),
        ("CT_1", "index"),
        ("STATIC", "settings"),
    ]
    # another replica's services see the same registry
    assert await services.aes.get("CT_1") == added

    changed = await aes.update("CT_1", "10.1.2.3", 1104, tls=True)
    assert await aes.get("CT_1") == RemoteAe("CT_1", "10.1.2.3", 1104, True, "", "index")
    assert changed.port == 1104
    removed = await aes.remove("CT_1")
    assert removed.host == "10.1.2.3"
    assert await aes.get("CT_1") is None
    with pytest.raises(NotFound, match="no remote AE 'CT_1' is known: add it"):
        await aes.require("CT_1")


async def test_duplicates_and_settings_entries_are_refused(services: Services) -> None:
    aes = _with_settings_peer(services)
    await aes.add("CT1", "10.0.0.1", 104)
    with pytest.raises(Conflict, match="'CT1' is registered already"):
        await aes.add("CT1", "10.0.0.2", 104)
    with pytest.raises(Conflict, match="defined in the settings"):
        await aes.add("STATIC", "10.0.0.2", 104)
    with pytest.raises(Conflict, match="defined in the settings"):
        await aes.update("STATIC", "10.0.0.2", 104)
    with pytest.raises(Conflict, match="defined in the settings"):
        await aes.remove("STATIC")
    with pytest.raises(NotFound, match="no remote AE 'NOBODY' is registered"):
        await aes.update("NOBODY", "10.0.0.2", 104)
    with pytest.raises(NotFound, match="no remote AE 'NOBODY' is registered"):
        await aes.remove("NOBODY")
    assert (await aes.require("CT1")).host == "10.0.0.1"


async def test_concurrent_registrations_of_one_title_give_one_peer(services: Services) -> None:
    results = await asyncio.gather(
        *(services.aes.add("RACE", f"10.0.0.{i}", 104) for i in range(1, 5)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, RemoteAe) for r in results) == 1
    assert all(isinstance(r, Conflict) for r in results if not isinstance(r, RemoteAe))
    assert [ae.ae_title for ae in await services.aes.list()] == ["RACE"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ae_title": "A" * 17}, "at most 16 characters"),
        ({"ae_title": "  "}, "cannot be blank"),
        ({"ae_title": "A\\B"}, "no backslash"),
        ({"ae_title": "A\tB"}, "no backslash or control characters"),
        ({"host": "pacs..example"}, "invalid host"),
        ({"host": "http://pacs"}, "invalid host"),
        ({"host": ""}, "a host name or an IP address is required"),
        ({"port": 0}, "from 1 to 65535"),
        ({"port": 65536}, "from 1 to 65535"),
        ({"port": "104"}, "an integer from 1 to 65535"),
        ({"tls": "yes"}, "invalid tls"),
        ({"description": "x" * 1025}, "at most 1024 characters"),
    ],
)
async def test_invalid_fields_are_refused_with_the_rule(
    services: Services, fields: dict[str, object], message: str
) -> None:
    values: dict[str, Any] = {"ae_title": "OK", "host": "10.0.0.1", "port": 104}
    values.update(fields)
    title, host, port = values.pop("ae_title"), values.pop("host"), values.pop("port")
    with pytest.raises(BadRequest, match=message):
        await services.aes.add(title, host, port, **values)
    assert await services.aes.list() == []
