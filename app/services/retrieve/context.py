"""What every retrieve use case shares: the index, the blobs, the decoders and their limits.

Blobs are read from the object store chunk by chunk while they are sent (memory stays bounded by
the chunk size), each checked against the size the index recorded, so a truncated or replaced
object breaks the response rather than send a part whose length lies.

PS3.10 files on the way out: ingest keeps blobs exactly as received (STOW-17), and some STOW
clients (dicomweb-client among them) send the File Meta group without the 128-byte preamble and
``DICM`` prefix (PS3.10 §7.1). :meth:`RetrieveContext.open` looks at the first 132 bytes of each
blob and, when the prefix is missing, sends ``bytes(128) + b"DICM"`` before the stored bytes, so
every instance we send is a complete PS3.10 file; its length grows by 132 accordingly.

An instance that needs transcoding (another syntax asked for, or NEG-08: Implicit VR / Big
Endian never go out as such) is read whole and re-encoded by the decoders, at most
``transcode_concurrency`` at once per process, in a worker process for the native codecs
(:mod:`app.services.decoders`), after its decoded size was checked (issue 19).
"""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import IO

import anyio
import anyio.to_thread

from app.dicom.decoding import DecodeLimits
from app.dicom.parse import PART10_PREAMBLE, PART10_PREFIX_LENGTH, has_part10_prefix
from app.dicom.target import Target
from app.dicom.transcode import transcode
from app.errors import DecodedSizeTooLarge, Gone, NotAcceptable, NotFound
from app.index.db import Database
from app.index.retrieval import InstanceRef
from app.services.decoders import DecoderPool
from app.services.delete import tombstoned
from app.services.retrieve.plan import decode_refusal
from app.storage.base import ObjectStore, StorageError

__all__ = ["PS310_PREFIX", "Payload", "RetrieveContext", "close", "once", "stored_instead"]

#: PS3.10 §7.1: a 128-byte preamble (zeros) and the "DICM" prefix open every DICOM file
PS310_PREFIX = bytes(PART10_PREAMBLE) + b"DICM"


@dataclass(frozen=True, slots=True)
class Payload:
    """One instance ready to send: its exact length and its bytes, read while they are sent."""

    ref: InstanceRef
    transfer_syntax: str
    length: int
    chunks: AsyncIterator[bytes]
    #: the blob's own stream under ``chunks`` (open while unread: an unstarted generator's
    #: ``aclose`` runs none of its body, so ``chunks`` alone cannot release it)
    source: AsyncIterator[bytes] | None = None

    async def close(self) -> None:
        """Release the blob (a payload opened but never sent, or sent in part)."""
        await close(self.chunks)
        if self.source is not None:
            await close(self.source)


class RetrieveContext:
    """The index, the object store and the decoders, as every retrieve use case reads them."""

    def __init__(
        self,
        db: Database,
        store: ObjectStore,
        *,
        chunk_size: int,
        decode_limits: DecodeLimits,
        decoders: DecoderPool,
        transcode_concurrency: int,
    ) -> None:
        self.db = db
        self.store = store
        #: how much of a blob one read takes (S3: one ranged GET)
        self.chunk_size = chunk_size
        self.decode_limits = decode_limits
        self.decoders = decoders
        #: how many decodes (transcodes, decoded frames) run at once in this process
        self.decoding = anyio.CapacityLimiter(max(1, transcode_concurrency))

    async def absent(self, target: Target) -> NotFound | Gone:
        """The error for a target not in the index: 410 while a tombstone lives (DEL-04)."""
        if await tombstoned(self.db, target):
            return Gone(f"the {target.noun} was deleted")
        return NotFound(f"no such {target.noun}")

    def stream(self, ref: InstanceRef) -> AsyncIterator[bytes]:
        """The stored blob of ``ref``, chunk by chunk, exactly as stored."""
        return self.store.open(ref.blob_key, chunk_size=self.chunk_size)

    async def read_all(self, key: str, size: int | None) -> bytes:
        """A whole blob in memory (for transcoding), checked against its indexed size."""
        buffer = bytearray()
        async for chunk in self.store.open(key, chunk_size=self.chunk_size):
            buffer += chunk
        if size is not None and len(buffer) != size:
            raise StorageError(f"object {key} does not hold the {size} bytes indexed")
        return bytes(buffer)

    async def copy(self, ref: InstanceRef, spool: IO[bytes]) -> None:
        """Copy the blob of ``ref`` into ``spool`` (rewound), checking its indexed size."""
        received = 0
        async for chunk in self.stream(ref):
            received += len(chunk)
            await anyio.to_thread.run_sync(spool.write, chunk)
        if received != ref.size:
            raise StorageError(f"object {ref.blob_key} does not hold the {ref.size} bytes indexed")
        spool.seek(0)

    async def transcode_instance(self, ref: InstanceRef, transfer_syntax: str) -> bytes:
        """``ref`` as a PS3.10 file in ``transfer_syntax`` (WADO-02/04, NEG-08/09).

        The blob is read whole and re-encoded by the decoders (at most
        ``transcode_concurrency`` at once). :class:`~app.dicom.transcode.TranscodeError` (406)
        when it cannot be produced. For WADO-RS and WADO-URI alike.
        """
        refusal = decode_refusal(ref, self.decode_limits)
        if refusal is not None:
            raise NotAcceptable(f"{refusal}; it can be retrieved as stored (transfer-syntax=*)")
        raw = await self.read_all(ref.blob_key, ref.size)
        try:
            return await self.decoders.run(
                transcode,
                raw,
                transfer_syntax,
                self.decode_limits,
                limiter=self.decoding,
                isolate=DecoderPool.needed(ref.transfer_syntax_uid),
            )
        except DecodedSizeTooLarge as exc:
            raise stored_instead(exc, "it") from None

    async def open(self, ref: InstanceRef, transfer_syntax: str | None = None) -> Payload:
        """``ref`` as a PS3.10 file (see the module docstring): its length, then its bytes.

        ``transfer_syntax`` (from :func:`~.plan.select`) other than the stored one means the
        instance is transcoded here, whole, before this returns. Otherwise only the first chunk
        is read here; the rest is read as the payload is consumed.
        """
        if transfer_syntax is not None and transfer_syntax != ref.transfer_syntax_uid:
            data = await self.transcode_instance(ref, transfer_syntax)
            return Payload(ref, transfer_syntax, len(data), once(data))
        chunks = self.stream(ref)
        pieces: list[bytes] = []
        received = 0
        try:
            while received < PART10_PREFIX_LENGTH:
                try:
                    piece = await anext(chunks)
                except StopAsyncIteration:
                    break
                pieces.append(piece)
                received += len(piece)
        except BaseException:
            await close(chunks)
            raise
        # normally one chunk (the whole of a small blob): sent as read, not copied
        head = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        prefix = b"" if has_part10_prefix(head) else PS310_PREFIX
        if ref.part10_prefix is not None and bool(ref.part10_prefix) == bool(prefix):
            # the length announced from the index (stored_length) would be wrong
            await close(chunks)
            raise StorageError(f"object {ref.blob_key} does not begin as its index entry says")
        return Payload(
            ref,
            ref.transfer_syntax_uid,
            ref.size + len(prefix),
            _checked(ref, prefix, head, chunks),
            chunks,
        )


async def _checked(
    ref: InstanceRef, prefix: bytes, head: bytes, rest: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    """``prefix`` and ``head``, then ``rest``; fails when the blob's size is not the indexed one.

    A truncated or replaced object must break the response rather than send a part whose
    Content-Length lies.
    """
    received = len(head)
    try:
        if received > ref.size:
            raise StorageError(f"object {ref.blob_key} does not hold the {ref.size} bytes indexed")
        if prefix:
            yield prefix
        if head:
            yield head
        async for chunk in rest:
            received += len(chunk)
            if received > ref.size:
                break
            yield chunk
    finally:
        await close(rest)
    if received != ref.size:
        raise StorageError(f"object {ref.blob_key} does not hold the {ref.size} bytes indexed")


async def once(data: bytes) -> AsyncIterator[bytes]:
    """``data`` as a one-chunk stream."""
    yield data


async def close(chunks: AsyncIterator[object]) -> None:
    """Close an async iterator that may be an async generator (or a store's stream)."""
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


def stored_instead(exc: DecodedSizeTooLarge, what: str = "its frames") -> NotAcceptable:
    """406 for a decode refused by the limits where the stored form can be sent instead."""
    return NotAcceptable(f"{exc.message}; {what} can be retrieved as stored (transfer-syntax=*)")
