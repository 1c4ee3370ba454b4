"""Retrieve bulk data (PS3.18 §10.4.1.1.5; BULK-01..03, META-04).

A BulkDataURI of ``/metadata`` (``.../instances/{i}/bulkdata/{tag}[/{item}/{tag}...]``) names one
value of one instance: its little-endian bytes (see :mod:`app.dicom.bulk`), labelled
``application/octet-stream`` or, for an Encapsulated Document, its own MIME type (BULK-02).
``/bulkdata`` on a study, series or instance is every such value, one part each (BULK-03).

Bulk retrieval is rare, so the simple way: the blob is copied to a spool (memory, then a temp
file) and parsed with pydicom in a worker thread, large values deferred so only those asked for
are read; each blob is read once for all its values.
"""

import tempfile
from collections.abc import AsyncIterator, Sequence

import anyio.to_thread

from app.dicom.bulk import BulkValue, bulk_paths, parse_bulk_path, read_bulk_values
from app.dicom.target import Target
from app.dicom.uids import DEFLATED
from app.errors import BadRequest, NotAcceptable, NotFound
from app.index.retrieval import InstanceRef, locate, locate_with_metadata
from app.services.retrieve.choice import OCTET_STREAM, choose_bulk
from app.services.retrieve.context import RetrieveContext, once
from app.services.retrieve.requests import Accepted, Answer, BulkRequest, Part, PartHead

__all__ = ["BulkRetrieval"]

#: a blob read for its bulk data stays in memory up to this size, then goes to a temp file
_SPOOL_MEMORY = 16 << 20


def _instance(ref: InstanceRef) -> Target:
    return Target(ref.study_uid, ref.series_uid, ref.sop_uid)


class BulkRetrieval:
    """The bulk data use cases over a :class:`~.context.RetrieveContext`."""

    def __init__(self, context: RetrieveContext) -> None:
        self._context = context

    async def retrieve(self, request: BulkRequest) -> Answer:
        """One value (``request.path``) or every value of the target (see the module
        docstring); the values read before the answer returns: the first one, or the one."""
        if request.path is not None:
            return await self._value(request.target, request.path, request.accepted)
        return await self._every_value(request.target, request.accepted)

    async def _value(self, target: Target, path: str, accepted: Accepted) -> Answer:
        """:class:`BadRequest` for a malformed ``path``, :class:`NotFound` for an unknown
        instance or a path that leads to no binary value, then the representation (406)."""
        steps = parse_bulk_path(path)
        if steps is None:
            raise BadRequest(
                "invalid bulk data path: expected GGGGEEEE, optionally preceded by "
                "GGGGEEEE/item/ pairs for a value inside a sequence item"
            )
        refs = await locate(self._context.db, target)
        if not refs:
            raise await self._context.absent(target)
        [value] = await self._values(refs[0], [steps])
        if value is None:
            raise NotFound(f"the instance has no bulk data value at {path}")
        chosen = choose_bulk(accepted, value.media_type or OCTET_STREAM)
        head = PartHead(chosen.media_type, len(value.data), target, f"/bulkdata/{path}")
        return Answer(_one(Part(head, once(value.data))), chosen.media_type, whole=chosen.whole)

    async def _every_value(self, target: Target, accepted: Accepted) -> Answer:
        """:class:`NotFound` when the target does not exist or has no bulk data at all; 406
        unless a multipart answer is acceptable; a value whose type is not acceptable is left
        out."""
        rows = await locate_with_metadata(self._context.db, target)
        if not rows:
            raise await self._context.absent(target)
        targets = [(ref, paths) for ref, raw in rows if (paths := bulk_paths(raw))]
        if not targets:
            raise NotFound("no bulk data: the metadata of the target has no BulkDataURI")
        chosen = choose_bulk(accepted)
        if chosen.whole:
            raise NotAcceptable(
                "several bulk data values are sent as multipart/related only; acceptable: "
                f'multipart/related; type="{OCTET_STREAM}"'
            )
        items = self._every(targets)
        first = await anext(items, None)
        if first is None:
            raise NotFound("no bulk data: none of the BulkDataURIs leads to a value")
        return Answer(_acceptable_parts(first, items, accepted), chosen.media_type)

    async def _every(
        self, targets: Sequence[tuple[InstanceRef, list[str]]]
    ) -> AsyncIterator[tuple[InstanceRef, str, BulkValue]]:
        """Every bulk value of ``targets``, instance by instance (each blob read once)."""
        for ref, paths in targets:
            steps = [parse_bulk_path(path) for path in paths]
            values = await self._values(ref, [s for s in steps if s is not None])
            kept = [p for p, s in zip(paths, steps, strict=True) if s is not None]
            for path, value in zip(kept, values, strict=True):
                if value is not None:
                    yield ref, path, value

    async def _values(
        self, ref: InstanceRef, steps: Sequence[Sequence[int]]
    ) -> list[BulkValue | None]:
        spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY)  # noqa: SIM115
        try:
            await self._context.copy(ref, spool)
            return await anyio.to_thread.run_sync(
                lambda: read_bulk_values(
                    spool,  # type: ignore[arg-type]
                    steps,
                    deflated=ref.transfer_syntax_uid in DEFLATED,
                )
            )
        finally:
            await anyio.to_thread.run_sync(spool.close)


def _part(ref: InstanceRef, path: str, value: BulkValue, accepted: Accepted) -> Part | None:
    """The part of one value, labelled as the caller accepts it; None if it accepts neither
    label (the value is then left out)."""
    try:
        chosen = choose_bulk(accepted, value.media_type or OCTET_STREAM)
    except NotAcceptable:
        return None
    head = PartHead(chosen.media_type, len(value.data), _instance(ref), f"/bulkdata/{path}")
    return Part(head, once(value.data))


async def _acceptable_parts(
    first: tuple[InstanceRef, str, BulkValue],
    rest: AsyncIterator[tuple[InstanceRef, str, BulkValue]],
    accepted: Accepted,
) -> AsyncIterator[Part]:
    part = _part(*first, accepted)
    if part is not None:
        yield part
    async for item in rest:
        part = _part(*item, accepted)
        if part is not None:
            yield part


async def _one(part: Part) -> AsyncIterator[Part]:
    yield part
