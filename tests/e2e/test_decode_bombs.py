"""Decoded-size bombs against a real server under an address-space limit (issue 19).

``lightbox serve`` runs with RLIMIT_AS at 1.5 GiB (its idle address space is about 0.5 GiB), so
a codec asked to decode one of these bombs cannot get its memory, and the native ones abort
(pylibjpeg-rle does) where nothing checked first: the server, or a decoder process, would die
in CI. Every decoding route must instead answer a clear 4xx before decoding, while a client
keeps rendering a small image the whole time, and the server must still be up at the end.

Bombs (:mod:`tests.bombs`, stored since their counts are consistent): RLE 24000 x 24000 x 16 bits
(1.15 GB decoded, 18 MB stored); JPEG 40000 x 40000 declared in the DICOM header, and only in its
codestream; JPEG 2000 and JPEG-LS codestreams declaring 40000 x 40000 under a 64 x 64 header; a
deflated data set of 96 MiB inflated (the server's instance bound is set to 64 MiB); a native
image of 4.4 Mpixels (the server's rendering bound is set to 4 Mpixels).
"""

import resource
import threading
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import httpx
import pytest
from pydicom import dcmread

from tests import bombs
from tests.e2e.server import running_server, server_env
from tests.factories import make_instance, multipart, stow_headers

pytestmark = pytest.mark.slow

ADDRESS_SPACE = 3 << 29  # 1.5 GiB
EVRLE = "1.2.840.10008.1.2.1"
NATIVE_FRAMES = f'multipart/related; type="application/octet-stream"; transfer-syntax={EVRLE}'
TRANSCODED = f'multipart/related; type="application/dicom"; transfer-syntax={EVRLE}'

COMPRESSED: dict[str, Callable[[], bytes]] = {
    "rle": lambda: bombs.rle_bomb(24000, 24000),
    "jpeg-header": lambda: bombs.jpeg_bomb(header=True),
    "jpeg-codestream": lambda: bombs.jpeg_bomb(header=False),
    "jpeg2000-codestream": bombs.j2k_bomb,
    "jpegls-codestream": bombs.jpegls_bomb,
}


def _limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def _uids(raw: bytes) -> tuple[str, str, str]:
    ds = dcmread(BytesIO(raw), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


class Target:
    def __init__(self, base: str, raw: bytes) -> None:
        self.study, self.series, self.sop = _uids(raw)
        self.base = base
        self.url = f"{base}/studies/{self.study}/series/{self.series}/instances/{self.sop}"

    def wado_uri(self, **extra: str) -> tuple[str, dict[str, str]]:
        query = {"requestType": "WADO", "studyUID": self.study, "seriesUID": self.series}
        return f"{self.base}/wado", {**query, "objectUID": self.sop, **extra}


def _expect(response: httpx.Response, status: int, what: str) -> None:
    assert response.status_code == status, (what, response.status_code, response.text[:300])
    assert "allowed" in response.json()["detail"], (what, response.text[:300])


class Renderer(threading.Thread):
    """Renders a small image over and over: the requests other clients make meanwhile."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.answers: list[int] = []

    def run(self) -> None:
        with httpx.Client(timeout=30) as http:
            while not self.stop.is_set() and len(self.answers) < 2000:
                try:
                    self.answers.append(http.get(f"{self.url}/rendered").status_code)
                except httpx.HTTPError:
                    self.answers.append(0)  # the server went away
                self.stop.wait(0.05)


def test_bombs_get_4xx_and_the_server_stays_up(tmp_path: Path) -> None:
    env = server_env(
        tmp_path / "data",
        f"sqlite+aiosqlite:///{tmp_path / 'index.db'}",
        LIGHTBOX_LIMITS__MAX_DECODED_INSTANCE_BYTES=str(64 << 20),
        LIGHTBOX_LIMITS__MAX_RENDERED_PIXELS=str(4 << 20),
    )
    files = {name: make() for name, make in COMPRESSED.items()}
    deflated = bombs.deflate_bomb(2048, 12)
    native = bombs.native_image(2100)
    healthy = make_instance(rows=64, columns=64)
    with (
        running_server(env, preexec_fn=_limit_address_space) as server,
        httpx.Client(timeout=60) as http,
    ):
        base = server.dicomweb
        stored = http.post(
            f"{base}/studies",
            content=multipart([*files.values(), deflated, native, healthy]),
            headers=stow_headers(),
        )
        assert stored.status_code == 200, stored.text[:500]
        renderer = Renderer(Target(base, healthy).url)
        renderer.start()
        try:
            for name, raw in files.items():
                target = Target(base, raw)
                url = target.url
                frames = http.get(f"{url}/frames/1", headers={"Accept": NATIVE_FRAMES})
                _expect(frames, 406, f"{name} frames")
                pixels = http.get(f"{url}/pixeldata", headers={"Accept": NATIVE_FRAMES})
                _expect(pixels, 406, f"{name} pixeldata")
                _expect(http.get(f"{url}/rendered"), 413, f"{name} rendered")
                _expect(http.get(f"{url}/thumbnail"), 413, f"{name} thumbnail")
                wado, query = target.wado_uri(contentType="image/jpeg")
                _expect(http.get(wado, params=query), 413, f"{name} WADO-URI rendered")
                wado, query = target.wado_uri(contentType="application/dicom", transferSyntax=EVRLE)
                _expect(http.get(wado, params=query), 406, f"{name} WADO-URI transferSyntax")
                transcoded = http.get(url, headers={"Accept": TRANSCODED})
                _expect(transcoded, 406, f"{name} transcoded instance")
            url = Target(base, deflated).url
            _expect(http.get(f"{url}/frames/1"), 406, "deflated frames")
            _expect(http.get(f"{url}/pixeldata"), 406, "deflated pixeldata")
            _expect(http.get(f"{url}/rendered"), 413, "deflated rendered")
            _expect(http.get(url, headers={"Accept": TRANSCODED}), 406, "deflated transcoded")
            target = Target(base, native)
            _expect(http.get(f"{target.url}/rendered"), 413, "native rendered")
            _expect(http.get(f"{target.url}/thumbnail"), 413, "native thumbnail")
            wado, query = target.wado_uri(contentType="image/png")
            _expect(http.get(wado, params=query), 413, "native WADO-URI rendered")
        finally:
            renderer.stop.set()
            renderer.join(30)
        assert server.process.poll() is None, server.log.read_text()[-2000:]
        assert http.get(f"{server.url}/readyz").status_code == 200
        assert renderer.answers, "the renderer made no request"
        assert set(renderer.answers) == {200}, renderer.answers
