"""Audit durability (GEN-10, issue 19 class 6): SIGKILL right after the answers loses no audit
row of an acknowledged store or delete.

The server lingers 30 s before writing a batch of audit rows, so every request's own row is still
in its queue when the server is killed: what survives is what was committed with the writes.
After a restart (which chains what the dead process left) and a clean stop, every acknowledged
store and delete has its row, the chain verifies, and nothing waits in the journal.
"""

import asyncio
from pathlib import Path

import httpx
from pydicom.uid import generate_uid

from app.services.audit import AuditFilter, ChainReport
from app.services.container import open_services
from tests.conftest import make_settings
from tests.e2e.server import running_server, server_env
from tests.factories import make_instance, multipart, stow_headers


async def _rows_of(
    database_url: str, data_dir: Path
) -> tuple[dict[str, dict[str, object]], ChainReport]:
    async with open_services(make_settings(database_url, data_dir)) as services:
        items, _ = await services.audit.search(AuditFilter(), limit=1000, offset=0)
        report = await services.audit.verify()
    by_request: dict[str, dict[str, object]] = {}
    for item in items:
        assert item["request_id"] not in by_request, f"two rows for {item['request_id']}"
        by_request[str(item["request_id"])] = item
    return by_request, report


def test_sigkill_after_the_answers_loses_no_write_audit_row(
    fresh_database_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    env = server_env(data_dir, fresh_database_url, LIGHTBOX_AUTH__AUDIT_LINGER_SECONDS="30")
    acked: dict[str, tuple[str, int]] = {}  # request id -> (action, instances)
    with running_server(env) as server, httpx.Client(timeout=30) as http:
        studies = []
        for n in range(8):
            study, series, sop = generate_uid(), generate_uid(), generate_uid()
            body = multipart(
                [
                    make_instance(
                        StudyInstanceUID=study, SeriesInstanceUID=series, SOPInstanceUID=sop
                    )
                ]
            )
            request_id = f"store-{n}-{generate_uid()[-10:]}"
            response = http.post(
                f"{server.dicomweb}/studies",
                content=body,
                headers={**stow_headers(), "X-Request-ID": request_id},
            )
            assert response.status_code == 200, response.text
            acked[request_id] = ("store", 1)
            studies.append(study)
            if n == 4:  # two deletes between the stores (a delete flushes the queue first)
                for gone in studies[:2]:
                    request_id = f"delete-{generate_uid()[-10:]}"
                    deleted = http.delete(
                        f"{server.dicomweb}/studies/{gone}", headers={"X-Request-ID": request_id}
                    )
                    assert deleted.status_code == 204, deleted.text
                    acked[request_id] = ("delete", 1)
        server.kill()  # the last answers' rows were only queued

    with running_server(env):  # starts again: chains what the dead process committed
        pass  # stopped cleanly: whatever its writer held is written

    rows, report = asyncio.run(_rows_of(fresh_database_url, data_dir))
    missing = sorted(set(acked) - set(rows))
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged writes have no audit row"
    for request_id, (action, count) in acked.items():
        row = rows[request_id]
        assert (row["action"], row["outcome"], row["count"]) == (action, "success", count)
    assert report.ok, report.problems
    assert report.pending == 0
