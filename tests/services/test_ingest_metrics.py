"""Ingest counts what it stored and refused under the protocol it came in by (issue 23 point 4):
``import`` for ``lightbox import``, ``cstore`` for a session the DIMSE front end opens."""

from pathlib import Path

from prometheus_client import REGISTRY

from app.index.imports import ImportJournal
from app.services.container import Services
from app.services.imports import ImportOptions, ImportProgress, RefusalReport
from tests.factories import make_instance


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_cstore_session_counts_as_cstore(services: Services) -> None:
    raw = make_instance()
    stored = _value("lightbox_ingest_instances_total", protocol="cstore")
    size = _value("lightbox_ingest_bytes_total", protocol="cstore")
    refused = _value(
        "lightbox_ingest_failures_total", protocol="cstore", reason="duplicate_instance"
    )
    for data in (raw, raw[:-1] + b"X"):  # then the same SOP Instance UID, other content
        spool = services.ingest.spool()
        spool.write(data)
        session = services.ingest.session(protocol="cstore")
        await session.add(spool.finish())
        await session.finish()
    assert _value("lightbox_ingest_instances_total", protocol="cstore") == stored + 1
    assert _value("lightbox_ingest_bytes_total", protocol="cstore") == size + len(raw)
    assert (
        _value("lightbox_ingest_failures_total", protocol="cstore", reason="duplicate_instance")
        == refused + 1
    )


async def test_lightbox_import_counts_as_import(services: Services, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(3):
        (tree / f"{i}.dcm").write_bytes(make_instance())
    before = _value("lightbox_ingest_instances_total", protocol="import")
    stow = _value("lightbox_ingest_instances_total", protocol="stow")
    report = RefusalReport(tmp_path / "report.csv")
    journal = ImportJournal(tmp_path / "journal.sqlite", "test")
    imports = services.imports
    try:
        await imports.run(
            [tree],
            sink=lambda settle: imports.local_sink(settle, actor="cli:tester", chunk=8),
            journal=journal,
            report=report,
            progress=ImportProgress(),
            options=ImportOptions(jobs=2),
        )
    finally:
        report.close()
        journal.close()
    assert _value("lightbox_ingest_instances_total", protocol="import") == before + 3
    assert _value("lightbox_ingest_instances_total", protocol="stow") == stow
