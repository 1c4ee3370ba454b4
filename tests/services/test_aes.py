"""Remote AEs known from the settings."""

import pytest

from app.config import RemoteAeSettings, Settings
from app.services.aes import RemoteAe, RemoteAeService


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
