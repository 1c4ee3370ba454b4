"""QIDO-RS results and WADO-RS metadata as multipart/related DICOM XML (QIDO-20, PS3.19)."""

import xml.etree.ElementTree as ET

import httpx
from pydicom.uid import generate_uid

from tests.factories import make_instance, multipart, stow_headers
from tests.multipart import parse_multipart

ROOT = "/dicom-web"
XML = 'multipart/related; type="application/dicom+xml"'


async def _study(client: httpx.AsyncClient, n: int = 3) -> tuple[str, list[str]]:
    study, series = str(generate_uid()), str(generate_uid())
    sops = [str(generate_uid()) for _ in range(n)]
    raws = [
        make_instance(
            StudyInstanceUID=study, SeriesInstanceUID=series, SOPInstanceUID=sop, InstanceNumber=i
        )
        for i, sop in enumerate(sops, start=1)
    ]
    response = await client.post(f"{ROOT}/studies", content=multipart(raws), headers=stow_headers())
    assert response.status_code == 200
    return study, sops


def _documents(response: httpx.Response) -> list[ET.Element]:
    assert response.status_code == 200, response.text
    part_type, _, parts = parse_multipart(response)
    assert part_type == "application/dicom+xml"
    docs = []
    for part in parts:
        assert part.headers["Content-Type"] == "application/dicom+xml; charset=utf-8"
        root = ET.fromstring(part.payload)
        assert root.tag == "NativeDicomModel"
        docs.append(root)
    return docs


def _value(doc: ET.Element, tag: str) -> str | None:
    return doc.findtext(f"DicomAttribute[@tag='{tag}']/Value")


async def test_qido_studies_as_xml(client: httpx.AsyncClient) -> None:
    study, _ = await _study(client)
    other, _ = await _study(client, 1)
    json_form = await client.get(f"{ROOT}/studies", params={"StudyInstanceUID": study})
    assert json_form.headers["content-type"] == "application/dicom+json"
    (expected,) = json_form.json()

    for accept in (XML, "multipart/related; type=application/dicom+xml", f"{XML}, */*;q=0.5"):
        response = await client.get(
            f"{ROOT}/studies", params={"StudyInstanceUID": study}, headers={"Accept": accept}
        )
        (doc,) = _documents(response)
        assert response.headers["x-total-count"] == "1"
        tags = {a.get("tag") for a in doc.findall("DicomAttribute")}
        assert tags == set(expected)
        assert _value(doc, "0020000D") == study
        assert _value(doc, "00201208") == "3"
        assert doc.findtext("DicomAttribute[@tag='00100010']/PersonName/Alphabetic/FamilyName") == (
            "Doe"
        )

    both = await client.get(
        f"{ROOT}/studies",
        params={"StudyInstanceUID": f"{study},{other}", "limit": "1"},
        headers={"Accept": XML},
    )
    assert len(_documents(both)) == 1
    assert "additional results" in both.headers["warning"]
    none = await client.get(
        f"{ROOT}/studies", params={"StudyInstanceUID": "1.2.3.4"}, headers={"Accept": XML}
    )
    assert none.status_code == 204
    # JSON stays the default, and an Accept that names neither form is still refused
    prefer_json = await client.get(
        f"{ROOT}/studies",
        params={"StudyInstanceUID": study},
        headers={"Accept": f"{XML}; q=0.5, application/dicom+json"},
    )
    assert prefer_json.headers["content-type"] == "application/dicom+json"
    refused = await client.get(f"{ROOT}/studies", headers={"Accept": "text/html"})
    assert refused.status_code == 406


async def test_metadata_as_xml(client: httpx.AsyncClient) -> None:
    study, sops = await _study(client)
    url = f"{ROOT}/studies/{study}/metadata"
    json_form = await client.get(url)
    response = await client.get(url, headers={"Accept": XML})
    docs = _documents(response)
    assert [_value(d, "00080018") for d in docs] == sops
    expected = json_form.json()
    for doc, obj in zip(docs, expected, strict=True):
        assert {a.get("tag") for a in doc.findall("DicomAttribute")} == set(obj)
        bulk = doc.find("DicomAttribute[@tag='7FE00010']/BulkData")
        assert bulk is not None
        assert bulk.get("uri") == obj["7FE00010"]["BulkDataURI"]
        assert bulk.get("uri", "").startswith("http://testserver/dicom-web/studies/")
    # a representation of its own: its own entity tag, and 304 for it
    etag = response.headers["etag"]
    assert etag != json_form.headers["etag"]
    again = await client.get(url, headers={"Accept": XML, "If-None-Match": etag})
    assert again.status_code == 304
    # the accept query parameter works too, at every level
    series = docs[0].findtext("DicomAttribute[@tag='0020000E']/Value")
    instance = await client.get(
        f"{ROOT}/studies/{study}/series/{series}/instances/{sops[1]}/metadata",
        params={"accept": XML},
    )
    (doc,) = _documents(instance)
    assert _value(doc, "00080018") == sops[1]
    gone = await client.get(f"{ROOT}/studies/{generate_uid()}/metadata", headers={"Accept": XML})
    assert gone.status_code == 404
