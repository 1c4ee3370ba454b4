"""``lightbox import --to URL``: instances sent to a remote Lightbox (or any STOW-RS origin
server) in batches, one ``multipart/related; type="application/dicom"`` request each (PS3.18
§10.5), streamed from the spooled files, ``concurrency`` requests at once.

Each outcome comes from the Store Instances Response (PS3.18 Table I.1-1): an instance in the
Referenced SOP Sequence (0008,1199) is stored, one in the Failed SOP Sequence (0008,1198) refused
with its Failure Reason (0008,1197). The SOP Instance UID of each file is read here first (so
the answer can be matched, and a file that has none is refused without being sent). A request
that fails on the way (connection, 502/503/504) is tried again, twice, after a pause; a refused
token (401, 403) ends the import (:class:`RemoteRefused`): every further request would be too.
"""

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any, Final

import anyio.to_thread
import httpx
import orjson
from pydicom import dcmread

from app.dicom.status import Status
from app.services.imports.pipeline import Settle
from app.services.imports.progress import ImportAborted, Settled
from app.services.imports.reading import Candidate
from app.services.spool import SpooledPart

__all__ = ["RemoteRefused", "StowSink"]

log = logging.getLogger(__name__)

_CHUNK: Final = 1 << 20
_RETRIES: Final = (0.5, 2.0)
_REFERENCED: Final = "00081199"
_FAILED: Final = "00081198"
_SOP_UID: Final = "00081155"
_REASON: Final = "00081197"
_COMMENT: Final = "00000902"


class RemoteRefused(ImportAborted):
    """The remote server refused the credentials (the import cannot go on)."""


def _sop_uid(part: SpooledPart) -> str | None:
    try:
        with part.open() as fp:
            ds = dcmread(fp, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        uid = ds.get("SOPInstanceUID")
    except Exception:
        return None
    return str(uid) if uid else None


class StowSink:
    """Batches of instances sent by STOW-RS (module docstring)."""

    def __init__(
        self,
        url: str,
        token: str | None,
        settle: Settle,
        *,
        batch_instances: int = 64,
        batch_bytes: int = 64 << 20,
        concurrency: int = 4,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._url = url.rstrip("/") + "/studies"
        headers = {"Accept": "application/dicom+json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.AsyncClient(
            headers=headers, timeout=httpx.Timeout(300, connect=30), transport=transport
        )
        self._settle = settle
        self._batch_instances = max(1, batch_instances)
        self._batch_bytes = batch_bytes
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self._batch: list[tuple[Candidate, str]] = []
        self._batch_size = 0
        self._sending: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None

    async def add(self, candidate: Candidate) -> None:
        if self._failure is not None:
            raise self._failure
        part = candidate.part
        assert part is not None
        uid = await anyio.to_thread.run_sync(_sop_uid, part)
        if uid is None:
            part.discard()
            self._settle(candidate, Settled(False, reason="not DICOM: no SOP Instance UID"))
            return
        self._batch.append((candidate, uid))
        self._batch_size += part.size
        if len(self._batch) >= self._batch_instances or self._batch_size >= self._batch_bytes:
            await self._flush()

    async def _flush(self) -> None:
        batch, self._batch, self._batch_size = self._batch, [], 0
        if not batch:
            return
        await self._slots.acquire()
        task = asyncio.create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def close(self) -> None:
        try:
            await self._flush()
            while self._sending:
                await asyncio.gather(*list(self._sending))
            if self._failure is not None:
                raise self._failure
        finally:
            await self._client.aclose()

    async def _send(self, batch: list[tuple[Candidate, str]]) -> None:
        try:
            results = await self._post(batch)
            for candidate, uid in batch:
                self._settle(
                    candidate,
                    results.get(uid) or Settled(False, reason="not in the server's response"),
                )
        except RemoteRefused as exc:
            self._failure = exc
        except (httpx.HTTPError, OSError) as exc:
            for candidate, _ in batch:
                self._settle(candidate, Settled(False, reason=f"not sent: {exc!r}"))
        finally:
            for candidate, _ in batch:
                if candidate.part is not None:
                    candidate.part.discard()
            self._slots.release()

    async def _post(self, batch: list[tuple[Candidate, str]]) -> dict[str, Settled]:
        boundary = f"lightbox-import-{uuid.uuid4().hex}"
        content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
        for attempt, pause in enumerate((*_RETRIES, None)):
            try:
                response = await self._client.post(
                    self._url,
                    content=_body(batch, boundary),
                    headers={"Content-Type": content_type},
                )
            except httpx.TransportError:
                if pause is None:
                    raise
                log.warning("STOW-RS request failed (attempt %d); trying again", attempt + 1)
                await asyncio.sleep(pause)
                continue
            if response.status_code in (502, 503, 504) and pause is not None:
                await asyncio.sleep(pause)
                continue
            break
        if response.status_code in (401, 403):
            raise RemoteRefused(f"the server refused the token ({response.status_code})")
        return _outcomes(response, [uid for _, uid in batch])


async def _body(batch: list[tuple[Candidate, str]], boundary: str) -> AsyncIterator[bytes]:
    for candidate, _ in batch:
        part = candidate.part
        assert part is not None
        yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        if part.data is not None:
            yield part.data
        else:
            with part.open() as fp:
                while chunk := await anyio.to_thread.run_sync(fp.read, _CHUNK):
                    yield chunk
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def _values(item: dict[str, Any], key: str) -> list[Any]:
    element = item.get(key)
    return list(element.get("Value", [])) if isinstance(element, dict) else []


def _outcomes(response: httpx.Response, uids: list[str]) -> dict[str, Settled]:
    """Each instance's outcome from a Store Instances Response (or the HTTP status alone)."""
    try:
        body = orjson.loads(response.content) if response.content else {}
    except orjson.JSONDecodeError:
        body = {}
    if not isinstance(body, dict) or not (_REFERENCED in body or _FAILED in body):
        reason = f"the server answered HTTP {response.status_code}"
        return {uid: Settled(False, reason=reason) for uid in uids}
    results: dict[str, Settled] = {}
    for item in _values(body, _REFERENCED):
        for uid in _values(item, _SOP_UID):
            results[uid] = Settled(True)
    for item in _values(body, _FAILED):
        reasons = _values(item, _REASON)
        code = int(reasons[0]) if reasons else None
        comment = _values(item, _COMMENT)
        text = str(comment[0]) if comment else _status_text(code)
        for uid in _values(item, _SOP_UID):
            results[uid] = Settled(False, reason=f"refused by the server: {text}", status=code)
    return results


def _status_text(code: int | None) -> str:
    if code is None:
        return "no reason given"
    try:
        return Status(code).name.lower().replace("_", " ")
    except ValueError:
        return f"status 0x{code:04X}"
