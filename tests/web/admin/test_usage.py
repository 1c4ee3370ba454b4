"""``/admin/usage``: the usage report (issue 23's statistics service, ``services.stats``) as a
page: totals, by modality and month, the largest studies; a server without it says so."""

from pathlib import Path

from tests.auth.helpers import auth_settings
from tests.web.archive import store_study, text_of
from tests.web.helpers import ALL, signed_in, web_client
from tests.web.test_headers import inline_code


async def test_usage(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        mr = await store_study(http, settings, instances=3, Modality="MR")
        await store_study(http, settings, instances=1, Modality="CT")
        await signed_in(http, services, permissions=ALL)
        page = await http.get("/admin/usage")
        assert page.status_code == 200
        assert inline_code(page.text) == []
        text = text_of(page.text)
        if getattr(services, "stats", None) is None:  # before issue 23's statistics
            assert "which this server does not have yet" in text
            return
        assert 'id="total-studies">2<' in page.text
        assert "MR" in text
        assert "CT" in text
        assert f"/studies/{mr}" in page.text  # the largest study first
