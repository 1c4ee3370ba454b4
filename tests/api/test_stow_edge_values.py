"""Edge values of indexed attributes through STOW-RS, WADO-RS and QIDO-RS (issue 19 class 5).

Both index databases store every instance of :mod:`tests.corpus_edge`, return each full value in
the metadata, and answer every search of the corpus with the same studies (the expected ones:
a value the index holds in a changed form, or by its prefix only, matches exactly as the whole
value does, and no other instance matches in its place).
"""

import httpx
import orjson
import pytest

from tests.corpus_edge import EDGES, TWIN_A, Edge
from tests.factories import make_instance, multipart, stow_headers, to_bytes

ROOT = "/dicom-web"


async def _store(client: httpx.AsyncClient, parts: list[bytes]) -> httpx.Response:
    return await client.post(f"{ROOT}/studies", content=multipart(parts), headers=stow_headers())


async def _found(client: httpx.AsyncClient, path: str, params: dict[str, str]) -> set[str]:
    """The StudyInstanceUIDs of what a search finds."""
    response = await client.get(ROOT + path, params={**params, "limit": "1000"})
    assert response.status_code in (200, 204), (path, response.status_code, response.text[:200])
    if response.status_code == 204:
        return set()
    return {obj["0020000D"]["Value"][0] for obj in response.json()}


async def test_every_edge_value_is_stored_returned_and_found(client: httpx.AsyncClient) -> None:
    built = [(edge, edge.build()) for edge in EDGES]
    response = await _store(client, [to_bytes(ds) for _, ds in built])
    assert response.status_code == 200, response.text[:500]
    assert "00081198" not in response.json()
    study_of = {edge.name: str(ds.StudyInstanceUID) for edge, ds in built}

    for edge, ds in built:
        url = (
            f"{ROOT}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}/metadata"
        )
        metadata = await client.get(url)
        assert metadata.status_code == 200, edge.name
        [obj] = orjson.loads(metadata.content)
        assert obj[edge.key]["Value"] == edge.value, edge.name

    expected: dict[tuple[str, str], set[str]] = {}
    for edge in EDGES:
        for path, params in edge.found_by:
            key = (path, orjson.dumps(params).decode())
            expected.setdefault(key, set()).add(study_of[edge.name])
    for (path, spelled), studies in expected.items():
        found = await _found(client, path, orjson.loads(spelled))
        assert found == studies, (path, spelled[:120])


NUL_EDGES = [edge for edge in EDGES if edge.name.startswith("NUL in")]


@pytest.mark.parametrize("edge", NUL_EDGES, ids=[edge.name for edge in NUL_EDGES])
async def test_a_study_with_nul_in_patient_data_takes_more_instances(
    client: httpx.AsyncClient, edge: Edge
) -> None:
    """The study row holds the PatientID as the index stores it: a second instance of the study,
    in another request, is not a conflict with it (STOW-10)."""
    first = edge.build()
    assert (await _store(client, [to_bytes(first)])).status_code == 200
    second = edge.build()
    second.StudyInstanceUID = first.StudyInstanceUID
    response = await _store(client, [to_bytes(second)])
    assert response.status_code == 200, response.text[:300]


async def test_searches_near_the_edges_find_nothing_else(client: httpx.AsyncClient) -> None:
    """A twin value's prefix, or an integer beyond 32 bits, matches only what is equal to it."""
    parts = [
        make_instance(StudyDescription=TWIN_A[:500]),
        make_instance(InstanceNumber="2147483647", SeriesNumber="-2147483648"),
    ]
    assert (await _store(client, parts)).status_code == 200
    assert await _found(client, "/studies", {"StudyDescription": TWIN_A}) == set()
    assert len(await _found(client, "/studies", {"StudyDescription": TWIN_A[:500]})) == 1
    assert await _found(client, "/instances", {"InstanceNumber": "2147483648"}) == set()
    assert len(await _found(client, "/instances", {"InstanceNumber": "2147483647"})) == 1
    assert len(await _found(client, "/series", {"SeriesNumber": "-2147483648"})) == 1
    assert len(await _found(client, "/instances", {"InstanceNumber": "999999999999"})) == 0
