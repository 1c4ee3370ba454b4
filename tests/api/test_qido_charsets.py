"""CS-01..05: names stored in any SpecificCharacterSet come back as UTF-8 JSON and match.

pydicom's charset test files (single-byte Latin/Arabic/Greek/Hebrew/Cyrillic sets, ISO 2022
Japanese and Korean, GB18030, UTF-8) are stored through STOW-RS, then searched with the
decoded name percent-encoded as UTF-8: exactly, by wildcard and fuzzily, on both databases.
"""

from pathlib import Path
from urllib.parse import quote

import httpx
import orjson
import pydicom
import pytest

from tests.corpus import corpus_path
from tests.factories import multipart, stow_headers

STUDIES = "/dicom-web/studies"

CHARSET_FILES = [
    "chrArab.dcm",
    "chrFren.dcm",
    "chrFrenMulti.dcm",
    "chrGerm.dcm",
    "chrGreek.dcm",
    "chrH31.dcm",
    "chrH32.dcm",
    "chrHbrw.dcm",
    "chrI2.dcm",
    "chrJapMulti.dcm",
    "chrJapMultiExplicitIR6.dcm",
    "chrKoreanMulti.dcm",
    "chrRuss.dcm",
    "chrX1.dcm",
    "chrX2.dcm",
]


def _stored_copy(name: str, tmp_path: Path) -> Path:
    """The file, or (chrJapMulti*) a copy whose File Meta names the right SOP Instance UID.

    Those two files carry a MediaStorageSOPInstanceUID that differs from their SOPInstanceUID,
    which STOW-RS rightly refuses; the data set itself is left byte for byte as it is.
    """
    path = corpus_path(name)
    ds = pydicom.dcmread(path)
    if ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID:
        return path
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    fixed = tmp_path / name
    ds.save_as(fixed, enforce_file_format=True)
    return fixed


def _json_name(decoded: str) -> dict[str, str]:
    groups = decoded.split("=")
    names = ("Alphabetic", "Ideographic", "Phonetic")
    return {k: v for k, v in zip(names, groups, strict=False) if v}


def _words(decoded: str) -> list[str]:
    return [w for g in decoded.split("=") for c in g.split("^") for w in c.split() if w]


@pytest.mark.parametrize("name", CHARSET_FILES)
async def test_charset_names(client: httpx.AsyncClient, tmp_path: Path, name: str) -> None:
    path = _stored_copy(name, tmp_path)
    ds = pydicom.dcmread(path)
    decoded = str(ds.PatientName)
    assert decoded
    stored = await client.post(
        STUDIES, content=multipart([path.read_bytes()]), headers=stow_headers()
    )
    assert stored.status_code == 200, stored.text

    # exact match on the whole name, percent-encoded UTF-8 (CS-03)
    response = await client.get(f"{STUDIES}?PatientName={quote(decoded, safe='')}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/dicom+json")
    [item] = orjson.loads(response.content)  # UTF-8 JSON (CS-04)
    assert item["00100010"] == {"vr": "PN", "Value": [_json_name(decoded)]}
    assert item["0020000D"]["Value"] == [ds.StudyInstanceUID]

    # the same through httpx's own encoding, a wildcard on the first two characters, fuzzily
    assert len((await client.get(STUDIES, params={"PatientName": decoded})).json()) == 1
    prefix = decoded[:2] + "*"
    assert len((await client.get(STUDIES, params={"PatientName": prefix})).json()) == 1
    words = _words(decoded)
    fuzzy = {"PatientName": " ".join(reversed(words)), "fuzzymatching": "true"}
    assert len((await client.get(STUDIES, params=fuzzy)).json()) == 1
    # and nothing else matches a name it does not have
    other = await client.get(STUDIES, params={"PatientName": decoded + "x"})
    assert other.status_code == 204


async def test_all_charsets_in_one_archive(client: httpx.AsyncClient, tmp_path: Path) -> None:
    """Several character sets side by side: each name finds its own study only."""
    names = ["chrArab.dcm", "chrGreek.dcm", "chrH31.dcm", "chrRuss.dcm", "chrX1.dcm"]
    paths = [_stored_copy(n, tmp_path) for n in names]
    body = multipart([p.read_bytes() for p in paths])
    assert (await client.post(STUDIES, content=body, headers=stow_headers())).status_code == 200
    everything = (await client.get(STUDIES)).json()
    assert len(everything) == len(names)
    for path in paths:
        ds = pydicom.dcmread(path)
        response = await client.get(STUDIES, params={"PatientName": str(ds.PatientName)})
        [item] = response.json()
        assert item["0020000D"]["Value"] == [ds.StudyInstanceUID]
