"""An instance stored over the ASGI app, and how the tests address it (WADO-RS URL, WADO-URI)."""

import io
from dataclasses import dataclass

import httpx
from pydicom import Dataset, dcmread

from tests.factories import multipart, stow_headers

ROOT = "/dicom-web"


@dataclass
class Obj:
    """A stored instance: its URL (without /rendered) and its dataset."""

    url: str
    ds: Dataset

    @property
    def study(self) -> str:
        return str(self.ds.StudyInstanceUID)

    @property
    def series(self) -> str:
        return str(self.ds.SeriesInstanceUID)


async def store(client: httpx.AsyncClient, raw: bytes) -> Obj:
    response = await client.post(
        f"{ROOT}/studies", content=multipart([raw]), headers=stow_headers()
    )
    assert response.status_code == 200, response.text
    ds = dcmread(io.BytesIO(raw))
    url = (
        f"{ROOT}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )
    return Obj(url, ds)


def wado_uri_query(obj: Obj, **extra: str) -> dict[str, str]:
    """The WADO-URI query parameters naming ``obj``, with ``extra`` added."""
    return {
        "requestType": "WADO",
        "studyUID": obj.study,
        "seriesUID": obj.series,
        "objectUID": str(obj.ds.SOPInstanceUID),
        **extra,
    }
