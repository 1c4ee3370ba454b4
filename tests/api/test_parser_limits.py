"""Numbers read from requests: a refusal with a reason, never a 500, on PostgreSQL and SQLite.

Python's ``int()`` refuses text of more than 4300 digits and digits outside ASCII (``"²"`` is a
digit to ``str.isdigit``), so every parser that reads a number from a path, a query parameter or
a header must check what it passes to it.
"""

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.factories import make_instance, multipart, stow_headers

ROOT = "/dicom-web"
HUGE = "9" * 5000


@pytest.fixture
async def instance(client: httpx.AsyncClient) -> str:
    study, series, sop = (str(generate_uid()) for _ in range(3))
    raw = make_instance(StudyInstanceUID=study, SeriesInstanceUID=series, SOPInstanceUID=sop)
    stored = await client.post(f"{ROOT}/studies", content=multipart([raw]), headers=stow_headers())
    assert stored.status_code == 200, stored.text
    return f"{ROOT}/studies/{study}/series/{series}/instances/{sop}"


def _wado_uri(instance: str, extra: str) -> str:
    _, study, _, series, _, sop = instance.removeprefix(ROOT + "/").split("/")
    return (
        f"{ROOT}/wado?requestType=WADO&studyUID={study}&seriesUID={series}&objectUID={sop}{extra}"
    )


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/frames/" + HUGE, "a frame number has more than 10 digits"),
        ("/rendered?viewport=²,64", "vw '²' is not an integer"),
        (f"/rendered?viewport=64,{HUGE}", "is not an integer of at most 18 digits"),
        ("/rendered?quality=²", "invalid quality '²'"),
        (f"/rendered?quality={HUGE}", "expected an integer from 1 to 100"),
        ("wado:&frameNumber=²", "invalid frameNumber '²'"),
        (f"wado:&frameNumber={HUGE}", "expected a positive integer"),
        ("wado:&contentType=image/jpeg&rows=³", "invalid rows '³'"),
    ],
)
async def test_numbers_beyond_int_are_refused(
    client: httpx.AsyncClient, instance: str, path: str, reason: str
) -> None:
    url = (
        _wado_uri(instance, path.removeprefix("wado:"))
        if path.startswith("wado:")
        else (instance + path)
    )
    response = await client.get(url)
    assert response.status_code == 400, response.text
    assert reason in response.json()["detail"]


async def test_a_range_beyond_int_is_unsatisfiable(
    client: httpx.AsyncClient, instance: str
) -> None:
    response = await client.get(
        f"{instance}/bulkdata/7FE00010", headers={"Range": f"bytes={HUGE}-"}
    )
    assert response.status_code == 416
    assert response.headers["content-range"].startswith("bytes */")


async def test_a_content_length_of_other_digits_is_not_a_length(client: httpx.AsyncClient) -> None:
    # uvicorn refuses such a header itself; the app must not fail on it behind another server
    response = await client.post(
        f"{ROOT}/studies",
        content=b"--b--\r\n",
        headers=[
            *((name.encode(), value.encode()) for name, value in stow_headers("b").items()),
            (b"Content-Length", "²".encode("latin-1")),
        ],
    )
    assert response.status_code == 400, response.text


@pytest.mark.usefixtures("instance")
@pytest.mark.parametrize("resource", ["studies", "series", "instances"])
async def test_an_offset_beyond_any_count_is_an_empty_page(
    client: httpx.AsyncClient, resource: str
) -> None:
    """An 18-digit offset (the most parse_unsigned takes) is past every row on both databases:
    no match, not a 500 (PostgreSQL once bound it as a 32-bit integer)."""
    response = await client.get(f"{ROOT}/{resource}?offset=999999999999999999")
    assert response.status_code == 204, response.text
