"""Build a large synthetic Lightbox index fast, plus the manifest ``load.py qido`` reads.

The study plan (patients, names, dates, accession numbers, study kinds and their modality
cycles, series descriptions, UIDs) is taken from the shared generator itself
(``../shared/bench/gen_dataset.py``: ``plan_studies`` and ``uid``, same ``--seed``/``--studies``/
``--patients``), so the index holds exactly the header values ``gen_dataset.py`` would have
written into DICOM files, and the manifest (``manifest.json`` + ``instances.jsonl``, the same
fields) lets ``load.py qido`` compute its expected counts. No DICOM file and no blob is written:
rows go straight into the index tables of :mod:`app.index.models` (COPY on PostgreSQL,
executemany on SQLite) with the same typed columns and normalised values ingest would store
(``normalize_pn``, ``normalize_tm``), stored DICOM JSON per level, and the study and series
counters. WADO-RS of these instances is therefore not possible (their blob keys point nowhere);
QIDO-RS sees a normal archive.

Usage (PostgreSQL; the database must exist and be migrated, the index empty unless --force)::

    .venv/bin/python bench/run.py query build-index \\
        --database-url postgresql+asyncpg://postgres@127.0.0.1/lb_qido \\
        --out /work/bench-data/qido1m --studies 20000 --series 5 --instances 10
"""

import argparse
import asyncio
import datetime as dt
import importlib.util
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import orjson
from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.dicom.text import normalize_pn, normalize_tm, parse_da
from app.index import migrate
from app.index.db import Database
from app.index.models import Instance, Series, Study

EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
#: ../shared/bench/gen_dataset.py beside the repository (bench/lib/ is two levels down)
DEFAULT_GEN = Path(__file__).resolve().parents[3] / "shared" / "bench" / "gen_dataset.py"


def load_generator(path: Path) -> ModuleType:
    """Import the shared ``gen_dataset.py`` (it is not a package)."""
    spec = importlib.util.spec_from_file_location("gen_dataset", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _v(vr: str, *values: Any) -> dict[str, Any]:
    if not values or values == (None,) or values == ("",):
        return {"vr": vr}
    if vr == "PN":
        return {"vr": vr, "Value": [{"Alphabetic": v} for v in values]}
    return {"vr": vr, "Value": list(values)}


def _age(study_date: str, birth: str) -> str:
    return f"{max(0, min(int(study_date[:4]) - int(birth[:4]), 999)):03d}Y"


class Rows:
    """Row dictionaries for the three tables, one study at a time (ids assigned here)."""

    def __init__(self, gen: ModuleType, args: argparse.Namespace) -> None:
        self.gen = gen
        self.args = args
        self.series_id = 0
        self.instance_id = 0

    def study(
        self, sid: int, patient: dict[str, Any], study: dict[str, Any]
    ) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        gen, args = self.gen, self.args
        seed = args.seed
        study_uid = gen.uid(seed, "study", study["index"])
        mods = study["modalities_cycle"]
        study_mods = sorted({mods[i % len(mods)] for i in range(args.series)})
        study_json = {
            "00080005": _v("CS", "ISO_IR 100"),
            "00080020": _v("DA", study["date"]),
            "00080030": _v("TM", study["time"]),
            "00080050": _v("SH", study["accession"]),
            "00080090": _v("PN", study["referring"]),
            "00081030": _v("LO", study["description"]),
            "00100010": _v("PN", patient["name"]),
            "00100020": _v("LO", patient["id"]),
            "00100021": _v("LO", "DWBENCH"),
            "00100030": _v("DA", patient["birth_date"]),
            "00100040": _v("CS", patient["sex"]),
            "00101010": _v("AS", _age(study["date"], patient["birth_date"])),
            "0020000D": _v("UI", study_uid),
            "00200010": _v("SH", study["study_id"]),
        }
        n_instances = args.series * args.instances
        study_row = {
            "id": sid,
            "study_uid": study_uid,
            "patient_id": patient["id"],
            "patient_name": patient["name"],
            "patient_name_norm": normalize_pn(patient["name"]),
            "issuer_of_patient_id": "DWBENCH",
            "patient_birth_date": parse_da(patient["birth_date"]),
            "patient_sex": patient["sex"],
            "study_date": parse_da(study["date"]),
            "study_time": normalize_tm(study["time"]),
            "accession_number": study["accession"],
            "referring_physician_name": study["referring"],
            "referring_physician_name_norm": normalize_pn(study["referring"]),
            "study_id": study["study_id"],
            "study_description": study["description"],
            "timezone_offset": None,
            "specific_character_set": "ISO_IR 100",
            "num_series": args.series,
            "num_instances": n_instances,
            "attrs_json": orjson.dumps(study_json),
        }
        series_rows: list[dict[str, Any]] = []
        instance_rows: list[dict[str, Any]] = []
        manifest: list[dict[str, Any]] = []
        for se in range(args.series):
            modality = mods[se % len(mods)]
            series_uid = gen.uid(seed, "series", study["index"], se)
            descs = gen.SERIES_DESCRIPTIONS[modality]
            series_desc = descs[(study["series_desc_offset"] + se) % len(descs)]
            self.series_id += 1
            series_json = {
                "00080005": _v("CS", "ISO_IR 100"),
                "00080021": _v("DA", study["date"]),
                "00080031": _v("TM", study["time"]),
                "00080060": _v("CS", modality),
                "0008103E": _v("LO", series_desc),
                "00180015": _v("CS", study["body_part"]),
                "00181030": _v("LO", f"{study['description']} / {series_desc}"),
                "0020000E": _v("UI", series_uid),
                "00200011": _v("IS", se + 1),
            }
            series_rows.append(
                {
                    "id": self.series_id,
                    "series_uid": series_uid,
                    "study_id": sid,
                    "modality": modality,
                    "series_number": se + 1,
                    "series_description": series_desc,
                    "series_date": parse_da(study["date"]),
                    "series_time": normalize_tm(study["time"]),
                    "body_part_examined": study["body_part"],
                    "pps_start_date": None,
                    "pps_start_time": None,
                    "scheduled_procedure_step_ids": None,
                    "requested_procedure_ids": None,
                    "num_instances": args.instances,
                    "attrs_json": orjson.dumps(series_json),
                }
            )
            sop_class = gen.SOP_CLASS[modality]
            for inst in range(args.instances):
                self.instance_id += 1
                sop_uid = gen.uid(seed, "sop", study["index"], se, inst)
                instance_json = {
                    "00080005": _v("CS", "ISO_IR 100"),
                    "00080016": _v("UI", sop_class),
                    "00080018": _v("UI", sop_uid),
                    "00080023": _v("DA", study["date"]),
                    "00080033": _v("TM", study["time"]),
                    "00200013": _v("IS", inst + 1),
                    "00280002": _v("US", 1),
                    "00280004": _v("CS", "MONOCHROME2"),
                    "00280010": _v("US", args.size),
                    "00280011": _v("US", args.size),
                    "00280100": _v("US", 16),
                }
                metadata = {**study_json, **series_json, **instance_json}
                instance_rows.append(
                    {
                        "id": self.instance_id,
                        "sop_uid": sop_uid,
                        "series_id": self.series_id,
                        "study_id": sid,
                        "sop_class_uid": sop_class,
                        "instance_number": inst + 1,
                        "rows": args.size,
                        "columns": args.size,
                        "bits_allocated": 16,
                        "number_of_frames": 1,
                        "transfer_syntax_uid": EXPLICIT_VR_LE,
                        "blob_key": f"bench-qido/{sop_uid}",
                        "size": 0,
                        "sha256": "0" * 64,
                        "attrs_json": orjson.dumps(instance_json),
                        "metadata_json": orjson.dumps(dict(sorted(metadata.items()))),
                        "frame_index": None,
                        "part10_prefix": True,
                    }
                )
                manifest.append(
                    {
                        "path": "",
                        "size": 0,
                        "sha256": "",
                        "pixel_sha256": "",
                        "study_uid": study_uid,
                        "series_uid": series_uid,
                        "sop_uid": sop_uid,
                        "sop_class_uid": sop_class,
                        "study_index": study["index"],
                        "series_number": se + 1,
                        "instance_number": inst + 1,
                        "rows": args.size,
                        "columns": args.size,
                        "modality": modality,
                        "modalities_in_study": study_mods,
                        "patient_id": patient["id"],
                        "patient_name": patient["name"],
                        "patient_birth_date": patient["birth_date"],
                        "patient_sex": patient["sex"],
                        "study_date": study["date"],
                        "study_time": study["time"],
                        "accession": study["accession"],
                        "study_description": study["description"],
                        "series_description": series_desc,
                        "referring_physician": study["referring"],
                    }
                )
        return study_row, series_rows, instance_rows, manifest


def _columns(table: Any) -> list[str]:
    return [
        c.name for c in table.__table__.columns if c.name != "created_at" and c.name != "updated_at"
    ]


async def _copy(conn: AsyncConnection, table: Any, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    columns = _columns(table)
    if conn.dialect.name == "postgresql":
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        records = [tuple(row[c] for c in columns) for row in rows]
        await driver.copy_records_to_table(table.__tablename__, records=records, columns=columns)
    else:
        await conn.execute(insert(table), rows)


def _batches(studies: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(studies), size):
        yield studies[start : start + size]


async def build(args: argparse.Namespace) -> None:
    gen = load_generator(Path(args.gen))
    plan_args = SimpleNamespace(studies=args.studies, patients=args.patients, seed=args.seed)
    patients, studies = gen.plan_studies(plan_args)
    out = Path(args.out)
    if args.migrate:
        await migrate.upgrade(args.database_url)
    db = Database(args.database_url, pool_size=2)
    started = time.monotonic()
    try:
        async with db.write() as conn:
            present = (await conn.execute(select(func.count()).select_from(Study))).scalar_one()
            if present and not args.force:
                raise SystemExit(f"the index already holds {present} studies (use --force)")
            if present:
                if db.is_sqlite:
                    for table in ("instance", "series", "study"):
                        await conn.execute(text(f"DELETE FROM {table}"))
                else:
                    await conn.execute(text("TRUNCATE instance, series, study RESTART IDENTITY"))
        rows = Rows(gen, args)
        done = 0
        total = args.studies * args.series * args.instances
        with (out / "instances.jsonl.tmp").open("w", encoding="utf-8") as manifest_file:
            for batch in _batches(studies, args.batch):
                study_rows: list[dict[str, Any]] = []
                series_rows: list[dict[str, Any]] = []
                instance_rows: list[dict[str, Any]] = []
                for study in batch:
                    st, se, inst, lines = rows.study(
                        study["index"] + 1, patients[study["patient"]], study
                    )
                    study_rows.append(st)
                    series_rows += se
                    instance_rows += inst
                    for line in lines:
                        manifest_file.write(json.dumps(line, ensure_ascii=False) + "\n")
                async with db.write() as conn:
                    await _copy(conn, Study, study_rows)
                    await _copy(conn, Series, series_rows)
                    await _copy(conn, Instance, instance_rows)
                done += len(instance_rows)
                rate = done / max(time.monotonic() - started, 1e-6)
                print(f"  {done}/{total} instances ({rate:,.0f}/s)", file=sys.stderr)
        (out / "instances.jsonl.tmp").replace(out / "instances.jsonl")
        async with db.write() as conn:
            if not db.is_sqlite:
                for table in ("study", "series", "instance"):
                    await conn.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                            f"(SELECT max(id) FROM {table}))"
                        )
                    )
        # VACUUM cannot run in a transaction: autocommit
        async with db.engine.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await auto.execute(text("VACUUM ANALYZE" if not db.is_sqlite else "ANALYZE"))
    finally:
        await db.close()
    manifest = {
        "generator": "lightbox-bench-qido-index/1 (plan: " + gen.GENERATOR + ")",
        "params": {
            "studies": args.studies,
            "series": args.series,
            "instances": args.instances,
            "size": args.size,
            "patients": args.patients,
            "seed": args.seed,
        },
        "counts": {
            "studies": args.studies,
            "series": args.studies * args.series,
            "instances": args.studies * args.series * args.instances,
            "patients": len({s["patient"] for s in studies}),
        },
        "transfer_syntax": EXPLICIT_VR_LE,
        "date_range": [gen.DATE_START.strftime("%Y%m%d"), gen.DATE_END.strftime("%Y%m%d")],
        "instances_file": "instances.jsonl",
        "index_only": True,
        "built": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - started, 1),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    print(f"done in {manifest['seconds']} s: {manifest['counts']}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--database-url", required=True, help="the Lightbox index to fill")
    ap.add_argument("--out", required=True, help="directory for manifest.json + instances.jsonl")
    ap.add_argument("--studies", type=int, default=20000)
    ap.add_argument("--series", type=int, default=5)
    ap.add_argument("--instances", type=int, default=10)
    ap.add_argument("--size", type=int, default=64, help="Rows/Columns recorded (default 64)")
    ap.add_argument(
        "--patients", type=int, default=0, help="distinct patients (default studies/10)"
    )
    ap.add_argument("--seed", type=int, default=1, help="gen_dataset.py seed (default 1)")
    ap.add_argument("--batch", type=int, default=500, help="studies per transaction (default 500)")
    ap.add_argument("--gen", default=str(DEFAULT_GEN), help="path of gen_dataset.py")
    ap.add_argument("--migrate", action="store_true", help="apply the migrations first")
    ap.add_argument("--force", action="store_true", help="empty a non-empty index first")
    args = ap.parse_args(argv)
    if min(args.studies, args.series, args.instances) < 1:
        ap.error("studies, series and instances must be >= 1")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    asyncio.run(build(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
