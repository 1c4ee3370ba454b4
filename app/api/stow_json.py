"""STOW-RS with metadata and bulk data (STOW-02, PS3.18 §10.5.1.2.2): the JSON form,
``multipart/related; type="application/dicom+json"``, and the XML form,
``type="application/dicom+xml"``.

Metadata parts (``application/dicom+json``: an array of DICOM JSON objects, or one object;
``application/dicom+xml``: one PS3.19 Native DICOM Model document each, read into DICOM JSON) and
bulk data parts (bound to the metadata's ``BulkDataURI`` values by an equal ``Content-Location``)
are received into the ordinary spool, so the body is never held whole in memory. Once the body is
complete, each metadata object becomes a PS3.10 instance (:mod:`app.dicom.stowjson`, off the event
loop, reading only the bulk parts it references) and joins the same ingest session as a PS3.10 part
would: the STOW response reports each instance, stored or failed, as for ``application/dicom``.
"""

from collections.abc import Iterator, Mapping
from typing import Any

import anyio.to_thread
import orjson
from starlette.requests import Request

from app.api.multipart import FramingError, Part, PartFailed, read_multipart
from app.dicom.dicomxml import from_xml
from app.dicom.stowjson import BulkPart, StowJsonError, build_instance
from app.errors import InvalidInstance, PayloadTooLarge
from app.services.container import Services
from app.services.ingest import IngestSession
from app.services.spool import SpooledPart

__all__ = ["read_dicom_json_parts"]

DICOM_JSON = "application/dicom+json"
DICOM_XML = "application/dicom+xml"


class _SpooledBulk(Mapping[str, BulkPart]):
    """Bulk parts by Content-Location, read from the spool only when an instance needs them."""

    def __init__(self) -> None:
        self._parts: dict[str, tuple[str, str | None, SpooledPart]] = {}

    def add(self, location: str, media_type: str, syntax: str | None, part: SpooledPart) -> None:
        old = self._parts.get(location)
        if old is not None:
            old[2].discard()
        self._parts[location] = (media_type, syntax, part)

    def __getitem__(self, location: str) -> BulkPart:
        media_type, syntax, part = self._parts[location]
        with part.open() as fp:
            return BulkPart(media_type, fp.read(), syntax)

    def __iter__(self) -> Iterator[str]:
        return iter(self._parts)

    def __len__(self) -> int:
        return len(self._parts)

    def discard(self) -> None:
        for _, _, part in self._parts.values():
            part.discard()
        self._parts.clear()


def _uid(obj: Any, key: str) -> str | None:
    try:
        value = obj[key]["Value"][0]
    except (KeyError, IndexError, TypeError):
        return None
    return value if isinstance(value, str) else None


def _metadata(part: SpooledPart, media_type: str) -> list[Any]:
    with part.open() as fp:
        data = fp.read()
    if media_type == DICOM_XML:
        return [from_xml(data)]
    parsed = orjson.loads(data)
    if isinstance(parsed, dict):
        return [parsed]
    if isinstance(parsed, list):
        return parsed
    raise ValueError("not an array of DICOM JSON objects")


async def read_dicom_json_parts(
    request: Request,
    boundary: str,
    session: IngestSession,
    services: Services,
    limit: int,
    *,
    metadata_type: str = DICOM_JSON,
) -> PayloadTooLarge | None:
    """Receive the parts, then build and ingest one instance per metadata object.

    ``metadata_type`` is the request's ``type`` parameter: the media type of its metadata parts.
    """
    objects: list[Any] = []
    bulk = _SpooledBulk()
    too_large: PayloadTooLarge | None = None
    try:
        try:
            async for event in read_multipart(
                request.stream(), boundary, services.ingest.spool, max_bytes=limit
            ):
                if isinstance(event, PartFailed):
                    session.reject_part(event.error)
                elif isinstance(event, FramingError):
                    session.reject_part(InvalidInstance(event.message))
                elif isinstance(event, Part):
                    _receive(event, objects, bulk, session, metadata_type)
        except PayloadTooLarge as exc:
            too_large = exc
        for obj in objects:
            sop_class, sop = _uid(obj, "00080016"), _uid(obj, "00080018")
            if not isinstance(obj, dict):
                session.reject_part(InvalidInstance("a metadata item is not a DICOM JSON object"))
                continue
            try:
                raw = await anyio.to_thread.run_sync(build_instance, obj, bulk)
            except StowJsonError as exc:
                session.reject_part(InvalidInstance(str(exc)), sop_class_uid=sop_class, sop_uid=sop)
                continue
            spool = services.ingest.spool()
            try:
                spool.write(raw)
            except BaseException:
                spool.discard()
                raise
            await session.add(spool.finish())
    finally:
        bulk.discard()
    return too_large


def _receive(
    event: Part,
    objects: list[Any],
    bulk: _SpooledBulk,
    session: IngestSession,
    metadata_type: str,
) -> None:
    media = event.media_type
    if media.essence == metadata_type:
        try:
            objects.extend(_metadata(event.payload, metadata_type))
        except ValueError as exc:  # orjson.JSONDecodeError and XmlError are ValueErrors
            kind = "DICOM XML" if metadata_type == DICOM_XML else "DICOM JSON"
            session.reject_part(InvalidInstance(f"metadata part is not {kind}: {exc}"))
        finally:
            event.payload.discard()
        return
    location = event.headers.get("content-location")
    if not location:
        event.payload.discard()
        session.reject_part(InvalidInstance("a bulk data part has no Content-Location"))
        return
    bulk.add(location, media.essence, media.params.get("transfer-syntax"), event.payload)
