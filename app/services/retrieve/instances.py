"""Retrieve the instances of a study, series or instance (PS3.18 §10.4; RES-03, WADO-01..03).

One call (:meth:`InstanceRetrieval.retrieve`) runs the whole use case, in the order that fixes
the outcome before the first byte (STYLE.md C5): the index look-up (one query; 404, or 410
while a tombstone lives), the representation and the transfer syntax of each instance
(:mod:`.choice`, :mod:`.plan`; 406, or instances left out), then the first instance is opened
(or transcoded). The parts are then read while they are written: the next instance sent as
stored is opened while the current one drains (:func:`_read_ahead`).
"""

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Sequence

from app.dicom.target import Level, Target
from app.dicom.uids import EXPLICIT_VR_LITTLE_ENDIAN
from app.errors import LightboxError, NotAcceptable
from app.index.retrieval import InstanceRef, locate
from app.services.retrieve.choice import DICOM, choose_syntax
from app.services.retrieve.context import Payload, RetrieveContext
from app.services.retrieve.plan import (
    Planned,
    Selection,
    decode_refusal,
    select,
    select_contexts,
    stored_length,
)
from app.services.retrieve.requests import Answer, InstancesRequest, Part, PartHead
from app.storage.base import StorageError

__all__ = ["InstanceRetrieval", "part_type", "read_ahead"]


def part_type(transfer_syntax: str) -> str:
    """The media type of an instance sent in ``transfer_syntax`` (PS3.18 §8.7.3.5.2).

    >>> part_type("1.2.840.10008.1.2.1")
    'application/dicom; transfer-syntax=1.2.840.10008.1.2.1'
    """
    return f"{DICOM}; transfer-syntax={transfer_syntax}"


def _instance(ref: InstanceRef) -> Target:
    return Target(ref.study_uid, ref.series_uid, ref.sop_uid)


def _head(payload: Payload) -> PartHead:
    return PartHead(part_type(payload.transfer_syntax), payload.length, _instance(payload.ref))


class InstanceRetrieval:
    """The instances use case over a :class:`~.context.RetrieveContext`."""

    def __init__(self, context: RetrieveContext) -> None:
        self._context = context

    async def resolve(self, target: Target) -> list[InstanceRef]:
        """The target's instances in WADO-01 order; :class:`NotFound` if it does not exist."""
        refs = await locate(self._context.db, target)
        if not refs:
            raise await self._context.absent(target)
        return refs

    def select(self, refs: Sequence[InstanceRef], requested: str | None) -> Selection:
        """:func:`~.plan.select` under the decode limits."""
        return select(refs, requested, self._context.decode_limits)

    def decode_refusal(self, refs: Sequence[InstanceRef]) -> str | None:
        """Why some of ``refs`` cannot be transcoded (the decode limits), for a 406's reason."""
        reasons = (decode_refusal(ref, self._context.decode_limits) for ref in refs)
        return next((reason for reason in reasons if reason), None)

    async def retrieve(self, request: InstancesRequest) -> Answer:
        """The target's instances as PS3.10 files, one part each (see the module docstring).

        A single instance may be asked for alone (``whole``, NEG-11). Instances that cannot be
        sent in the chosen syntax are left out and the answer's ``omission`` says so (WADO-03).
        """
        refs = await self.resolve(request.target)
        if request.accepted.per_instance:
            return await self._per_instance(refs, request)
        try:
            chosen = choose_syntax(
                request.accepted,
                whole=request.target.level is Level.INSTANCE,
                producible=lambda syntax: self._counts(refs, syntax),
            )
        except NotAcceptable as exc:
            refusal = self.decode_refusal(refs)
            if refusal is None:
                raise
            raise NotAcceptable(f"{exc.message} ({refusal})") from None
        selection = self.select(refs, chosen.transfer_syntax)
        first_item, rest = selection.items[0], selection.items[1:]
        first = await self._context.open(first_item.ref, first_item.transfer_syntax)
        if chosen.whole:
            return Answer(
                _one(Part(_head(first), first.chunks)),
                DICOM,
                first.transfer_syntax,
                whole=True,
                heads=[_head(first)],
            )
        omission = None
        if selection.omitted:
            omission = (
                f"{selection.omitted} of {len(refs)} instances left out: they cannot be sent in "
                f"transfer syntax {chosen.transfer_syntax or EXPLICIT_VR_LITTLE_ENDIAN}"
            )
        return Answer(
            read_ahead(self._context, first, rest),
            DICOM,
            selection.transfer_syntax,
            omission=omission,
            heads=_heads(first, rest),
            left_out=[_instance(ref) for ref in selection.left_out],
        )

    async def _per_instance(self, refs: Sequence[InstanceRef], request: InstancesRequest) -> Answer:
        """The instances for presentation contexts (a DIMSE peer): each on its SOP class's
        contexts, the ones none can carry left out (:func:`~.plan.select_contexts`);
        :class:`NotAcceptable` when that is all of them. No part is opened here: a DIMSE peer
        counts each instance as a sub-operation of its own (:meth:`_each`)."""
        selection = select_contexts(
            refs, request.accepted.syntaxes_for, self._context.decode_limits
        )
        if not selection.items:
            raise NotAcceptable(
                f"none of the {len(refs)} instances can be sent in the accepted presentation "
                "contexts"
            )
        omission = None
        if selection.omitted:
            omission = (
                f"{selection.omitted} of {len(refs)} instances left out: no accepted "
                "presentation context can carry them"
            )
        return Answer(
            self._each(selection.items),
            DICOM,
            selection.transfer_syntax,
            omission=omission,
            left_out=[_instance(ref) for ref in selection.left_out],
        )

    async def _each(self, items: Sequence[Planned]) -> AsyncGenerator[Part, None]:
        """One part per instance, the next blob sent as stored opened while the current part
        is sent (as :meth:`_read_ahead`); an instance that cannot be opened (its transcoding
        failed, its blob is missing) is a part with its ``failure``, and the others follow."""
        context = self._context
        ahead: asyncio.Task[Payload] | None = None
        try:
            for index, item in enumerate(items):
                opening = ahead or asyncio.ensure_future(
                    context.open(item.ref, item.transfer_syntax)
                )
                ahead = None
                try:
                    payload = await opening
                except (LightboxError, StorageError) as exc:
                    reason = exc.message if isinstance(exc, LightboxError) else str(exc)
                    head = PartHead(part_type(item.transfer_syntax), None, _instance(item.ref))
                    yield Part(head, _nothing(), failure=reason)
                    continue
                following = items[index + 1] if index + 1 < len(items) else None
                if following is not None and not following.transcoded:
                    ahead = asyncio.ensure_future(
                        context.open(following.ref, following.transfer_syntax)
                    )
                yield Part(_head(payload), payload.chunks)
        finally:
            if ahead is not None:  # the peer went away: release what was opened ahead
                ahead.cancel()
                opened = (await asyncio.gather(ahead, return_exceptions=True))[0]
                if isinstance(opened, Payload):
                    await opened.close()

    def _counts(self, refs: Sequence[InstanceRef], syntax: str | None) -> tuple[int, int]:
        """(instances sendable, of which transcoded) for a transfer syntax request (NEG-02)."""
        items = self.select(refs, syntax).items
        return len(items), sum(1 for item in items if item.transcoded)


async def read_ahead(
    context: RetrieveContext, first: Payload, rest: Sequence[Planned]
) -> AsyncGenerator[Part, None]:
    """One part per instance; the next blob is opened while the current part is being sent.

    Opening an instance sent as stored reads its first chunk only (a whole small blob; on
    S3 the first ranged GET): doing that for part N+1 while part N drains overlaps the read
    with the send, at the cost of one chunk held ahead. A transcoded instance is decoded
    whole when opened, so it is opened only when its turn comes (memory stays one
    instance).
    """
    payload = first
    ahead: asyncio.Task[Payload] | None = None
    try:
        for index in range(len(rest) + 1):
            if index < len(rest) and not rest[index].transcoded:
                planned = rest[index]
                ahead = asyncio.ensure_future(context.open(planned.ref, planned.transfer_syntax))
            yield Part(_head(payload), payload.chunks)
            if index == len(rest):
                return
            if ahead is not None:
                payload, ahead = await ahead, None
            else:
                payload = await context.open(rest[index].ref, rest[index].transfer_syntax)
    finally:
        if ahead is not None:  # the client went away: release what was opened ahead
            ahead.cancel()
            opened = (await asyncio.gather(ahead, return_exceptions=True))[0]
            if isinstance(opened, Payload):
                await opened.close()


def _heads(first: Payload, rest: Sequence[Planned]) -> list[PartHead] | None:
    """Every part's head, when each length is known before its blob is opened (sent as stored,
    with the PS3.10 prefix recorded); None otherwise."""
    heads = [_head(first)]
    for item in rest:
        length = None if item.transcoded else stored_length(item.ref)
        if length is None:
            return None
        heads.append(PartHead(part_type(item.transfer_syntax), length, _instance(item.ref)))
    return heads


async def _one(part: Part) -> AsyncIterator[Part]:
    yield part


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # an async generator that yields nothing
