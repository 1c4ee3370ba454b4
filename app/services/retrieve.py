"""WADO-RS retrieve (PS3.18 §10.4): resolve a study, series or instance, then stream its files.

The use case runs in two phases so the HTTP status is fixed before the first byte (STYLE.md C5):

1. :meth:`RetrieveService.resolve` looks the target up in the index (one query) and raises
   :class:`~app.errors.NotFound` for an unknown resource; the database connection is released
   before it returns, so streaming never holds one. :func:`select` then decides which instances can
   be sent in the transfer syntax the client asked for.
2. :meth:`RetrieveService.open` / :meth:`RetrieveService.stream` read each blob from the object
   store chunk by chunk while it is being sent (memory stays bounded by the chunk size).

Transfer syntaxes, in this first slice (no transcoder yet): ``*`` sends the stored bytes; a UID
equal to the stored syntax sends the stored bytes; no syntax asked for means Explicit VR Little
Endian (NEG-07), so the stored bytes when stored that way. Anything else needs transcoding, so the
instance cannot be produced (WADO-03: the caller answers 206 or 406).

PS3.10 files on the way out: ingest keeps blobs exactly as received (STOW-17), and some STOW
clients (dicomweb-client among them) send the File Meta group without the 128-byte preamble and
``DICM`` prefix (PS3.10 §7.1). :meth:`RetrieveService.open` looks at the first 132 bytes of each
blob and, when the prefix is missing, sends ``bytes(128) + b"DICM"`` before the stored bytes, so
every instance we send is a complete PS3.10 file; its length grows by 132 accordingly.
"""

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from app.dicom.uids import EXPLICIT_VR_LITTLE_ENDIAN
from app.errors import NotFound
from app.index.db import Database
from app.index.retrieval import InstanceRef, locate
from app.storage.base import ObjectStore, StorageError

__all__ = [
    "ANY_TRANSFER_SYNTAX",
    "PS310_PREFIX",
    "InstanceRef",
    "Payload",
    "RetrieveService",
    "Selection",
    "producible",
    "select",
]

ANY_TRANSFER_SYNTAX = "*"
#: PS3.10 §7.1: a 128-byte preamble (zeros) and the "DICM" prefix open every DICOM file
PS310_PREFIX = bytes(128) + b"DICM"
_PREFIX_LENGTH = len(PS310_PREFIX)


def producible(stored: str, requested: str | None) -> bool:
    """Whether an instance stored in ``stored`` can be sent in ``requested`` without transcoding.

    ``requested`` is None (the default, Explicit VR Little Endian, NEG-07), ``"*"`` (as stored,
    NEG-06) or a Transfer Syntax UID.

    >>> producible("1.2.840.10008.1.2.4.50", "*"), producible("1.2.840.10008.1.2.1", None)
    (True, True)
    >>> producible("1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50")
    False
    """
    if requested == ANY_TRANSFER_SYNTAX:
        return True
    return stored == (EXPLICIT_VR_LITTLE_ENDIAN if requested is None else requested)


@dataclass(frozen=True, slots=True)
class Selection:
    """The instances to send for one transfer syntax request, and how many are left out."""

    refs: list[InstanceRef]
    omitted: int

    @property
    def transfer_syntax(self) -> str | None:
        """The syntax every selected instance is sent in, or None when they differ."""
        syntaxes = {ref.transfer_syntax_uid for ref in self.refs}
        return syntaxes.pop() if len(syntaxes) == 1 else None


def select(refs: Sequence[InstanceRef], requested: str | None) -> Selection:
    """Keep the instances that can be sent in ``requested`` (WADO-03), in their order."""
    kept = [ref for ref in refs if producible(ref.transfer_syntax_uid, requested)]
    return Selection(kept, len(refs) - len(kept))


@dataclass(frozen=True, slots=True)
class Payload:
    """One instance ready to send: its exact length and its bytes, read while they are sent."""

    ref: InstanceRef
    transfer_syntax: str
    length: int
    chunks: AsyncIterator[bytes]


class RetrieveService:
    """Resolves retrieve targets in the index and streams their blobs from the object store."""

    def __init__(self, db: Database, store: ObjectStore, *, chunk_size: int = 1 << 20) -> None:
        self._db = db
        self._store = store
        self._chunk_size = chunk_size

    async def resolve(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[InstanceRef]:
        """The target's instances in WADO-01 order; :class:`NotFound` if it does not exist."""
        async with self._db.read() as conn:
            refs = await locate(conn, study_uid, series_uid, sop_uid)
        if not refs:
            level = "instance" if sop_uid else "series" if series_uid else "study"
            raise NotFound(f"no such {level}")
        return refs

    def stream(self, ref: InstanceRef) -> AsyncIterator[bytes]:
        """The stored blob of ``ref``, chunk by chunk, exactly as stored."""
        return self._store.open(ref.blob_key, chunk_size=self._chunk_size)

    async def open(self, ref: InstanceRef) -> Payload:
        """``ref`` as a PS3.10 file (see the module docstring): its length, then its bytes.

        Only the first chunk is read here; the rest is read as the payload is consumed.
        """
        chunks = self.stream(ref)
        head = bytearray()
        try:
            while len(head) < _PREFIX_LENGTH:
                try:
                    head += await anext(chunks)
                except StopAsyncIteration:
                    break
        except BaseException:
            await _close(chunks)
            raise
        prefix = b"" if head[128:_PREFIX_LENGTH] == b"DICM" else PS310_PREFIX
        return Payload(
            ref,
            ref.transfer_syntax_uid,
            ref.size + len(prefix),
            _checked(ref, prefix, bytes(head), chunks),
        )


async def _checked(
    ref: InstanceRef, prefix: bytes, head: bytes, rest: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    """``prefix + head``, then ``rest``; fails when the blob's size is not the indexed one.

    A truncated or replaced object must break the response rather than send a part whose
    Content-Length lies.
    """
    received = len(head)
    try:
        yield prefix + head
        async for chunk in rest:
            received += len(chunk)
            if received > ref.size:
                break
            yield chunk
    finally:
        await _close(rest)
    if received != ref.size:
        raise StorageError(f"object {ref.blob_key} does not hold the {ref.size} bytes indexed")


async def _close(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()
