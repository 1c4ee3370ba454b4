"""``/admin/dimse``: the remote AEs (the settings' and the registry's) and the pull jobs."""

from pathlib import Path

from app.services.jobs import JobState
from tests.auth.helpers import auth_settings
from tests.web.archive import text_of
from tests.web.helpers import ALL, signed_in, web_client


async def test_peers_and_jobs_are_shown(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(
        database_url,
        tmp_path / "data",
        dimse={"remote_aes": [{"ae_title": "STATIC", "host": "10.0.0.9", "port": 104}]},
    )
    async with web_client(settings) as (services, http):
        await signed_in(http, services, permissions=ALL)
        empty = text_of((await http.get("/admin/dimse")).text)
        assert "No jobs." in empty
        await services.aes.add("LEGACY", "pacs.example.org", 4242, description="old PACS")
        job = await services.jobs.create("pull", {"source": "LEGACY"}, owner="migrator")
        async with await services.jobs.acquire(job.id) as lease:
            lease.progress.units_total = 7
            lease.finish(JobState.FAILED, "2 of 7 studies failed")
        text = text_of((await http.get("/admin/dimse")).text)
        assert "LEGACY pacs.example.org 4242 no old PACS index" in text
        assert "STATIC 10.0.0.9 104 no settings" in text
        assert f"{job.id[:12]} pull failed migrator" in text
        assert "2 of 7 studies failed" in text
