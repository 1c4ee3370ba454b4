"""Bearer tokens of the embedded issuer: issued and recorded, listed, revoked (GEN-06, GEN-10).

Every token the embedded key signs goes through :meth:`TokenService.issue`, whichever front end
asks: ``lightbox token create`` (kind ``cli``), the web login (``session``), a share link
(``share``). It is recorded in the index (``issued_token``: jti, subject, scopes, restrictions,
times, kind, who asked) *before* it is signed, so that no token exists that cannot be listed or
revoked; the token itself is never stored. Issuing and revoking are audited (``token-issued``,
``token-revoked``), their rows committed with the registry's change.

The deny list
-------------
:meth:`TokenService.revoke` marks the row revoked; every verifier (each worker of each replica)
refuses the token from then on, through :class:`RevocationList`, the
:class:`~app.auth.verify.RevocationCheck` the verifiers are given. Reading the index on every
request would put a query on the hot path of every request, so each process keeps the set of
revoked tokens that are still alive (a revoked token that has expired is refused anyway, so the
set stays as small as the tokens alive) and reads it again once it is ``refresh_seconds`` old:

- **revocation latency**: a revoked token is refused by the process that revoked it at once,
  and by every other process within ``refresh_seconds`` (``LIGHTBOX_AUTH__REVOCATION_REFRESH_
  SECONDS``, 5 s by default; 0 reads the index on every request);
- one query per process per interval, whatever the request rate; requests meanwhile cost a
  dictionary look-up;
- when the index cannot be read, the last set read is kept (a warning is logged, and the read
  retried each second); a process that has never read it answers 503 rather than serve tokens it
  cannot check.
"""

import asyncio
import logging
import time
import unicodedata
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from app.auth.principal import ClaimMapping, Permission
from app.auth.verify import TokenIssuer
from app.dicom.uids import is_valid_uid
from app.errors import BadRequest, LightboxError, NotFound, Unavailable
from app.index import tokens as registry
from app.index.db import Database, DriverError
from app.index.tokens import TokenRow, TokenSearch, TokenState
from app.services.audit import AuditLog, AuditRecord, Outcome, WriteAudit

__all__ = [
    "MAX_TTL",
    "IssuedToken",
    "RevocationList",
    "TokenKind",
    "TokenRecord",
    "TokenSearch",
    "TokenService",
    "TokenState",
    "record_json",
]

log = logging.getLogger(__name__)

#: a token's longest lifetime (revocation makes long-lived tokens safe, not eternal ones)
MAX_TTL: Final = timedelta(days=3660)
#: longest subject, creator and reason kept
_MAX_TEXT: Final = 256
#: PatientID is LO (PS3.5 §6.2): at most 64 characters
_MAX_PATIENT_ID: Final = 64
#: a jti as the embedded issuer makes them (uuid4 hex); other values are refused early
_JTI_MAX: Final = 64

#: the record of an issued token, as the registry holds it
TokenRecord = TokenRow


class TokenKind(StrEnum):
    """Which front end asked for a token."""

    #: ``lightbox token create``
    CLI = "cli"
    #: a web login's session
    SESSION = "session"
    #: a share link: restricted to some studies or patients
    SHARE = "share"


class NotIssuer(LightboxError):
    """Tokens cannot be issued here: the embedded issuer is off (``auth.local_key=false``)."""

    http_status = 409


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token just signed, and its record."""

    token: str
    record: TokenRecord


def record_json(record: TokenRecord, now: datetime | None = None) -> dict[str, Any]:
    """A record as the admin API and ``lightbox token list --json`` show it."""
    now = now or datetime.now(UTC)

    def iso(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat().replace("+00:00", "Z")

    return {
        "jti": record.jti,
        "kind": record.kind,
        "subject": record.subject,
        "scopes": list(record.scopes),
        "studies": None if record.study_uids is None else list(record.study_uids),
        "patients": None if record.patient_ids is None else list(record.patient_ids),
        "issued_at": iso(record.issued_at),
        "expires_at": iso(record.expires_at),
        "created_by": record.created_by,
        "state": record.state(now).value,
        "revoked_at": iso(record.revoked_at),
        "revoked_by": record.revoked_by,
        "revoke_reason": record.revoke_reason,
    }


def _text(value: str | None, what: str, *, required: bool = False) -> str | None:
    if value is None or not value.strip():
        if required:
            raise BadRequest(f"{what} must not be empty")
        return None
    value = value.strip()
    if len(value) > _MAX_TEXT:
        raise BadRequest(f"{what} is longer than {_MAX_TEXT} characters")
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise BadRequest(f"{what} must not contain control characters")
    return value


def _scopes(scopes: Sequence[str]) -> tuple[str, ...]:
    names = [s for item in scopes for s in str(item).replace(",", " ").split()]
    known = {p.value for p in Permission}
    unknown = sorted(set(names) - known)
    if unknown:
        raise BadRequest(
            f"unknown scope {', '.join(unknown)} (one of {', '.join(p.value for p in Permission)})"
        )
    if not names:
        raise BadRequest("a token needs at least one scope")
    return tuple(dict.fromkeys(names))


def _ttl(ttl: timedelta | int | float) -> timedelta:
    value = ttl if isinstance(ttl, timedelta) else timedelta(seconds=ttl)
    value = timedelta(seconds=int(value.total_seconds()))
    if value.total_seconds() < 1:
        raise BadRequest("a token's lifetime must be at least one second")
    if value > MAX_TTL:
        raise BadRequest(f"a token's lifetime must be at most {MAX_TTL.days} days")
    return value


def _studies(studies: Sequence[str]) -> tuple[str, ...] | None:
    for uid in studies:
        if not is_valid_uid(uid):
            raise BadRequest(f"not a StudyInstanceUID: {uid!r}")
    return tuple(dict.fromkeys(studies)) or None


def _patients(patients: Sequence[str]) -> tuple[str, ...] | None:
    for pid in patients:
        if not pid.strip() or len(pid) > _MAX_PATIENT_ID or "\\" in pid:
            raise BadRequest(f"not a PatientID (1 to {_MAX_PATIENT_ID} characters): {pid!r}")
    return tuple(dict.fromkeys(patients)) or None


def _detail(record: TokenRecord) -> str:
    parts = [
        f"jti={record.jti}",
        f"kind={record.kind}",
        f"subject={record.subject}",
        f"scope={' '.join(record.scopes)}",
        f"expires={record.expires_at.isoformat()}",
    ]
    if record.study_uids:
        parts.append(f"studies={','.join(record.study_uids)}")
    if record.patient_ids:
        parts.append(f"patients={len(record.patient_ids)}")
    return " ".join(parts)


class RevocationList:
    """The revoked tokens still alive, read from the index at most every ``refresh_seconds``
    (the module's docstring says why, and what it bounds)."""

    #: after a failed read, the next one is tried this much later (not on every request)
    RETRY_SECONDS: Final = 1.0

    def __init__(self, db: Database, *, refresh_seconds: float = 5.0) -> None:
        self._db = db
        self._refresh = max(0.0, refresh_seconds)
        self._denied: dict[str, datetime] = {}
        self._loaded = False
        self._next_read = float("-inf")
        self._lock = asyncio.Lock()

    @property
    def refresh_seconds(self) -> float:
        return self._refresh

    async def revoked(self, jti: str) -> str | None:
        """Why ``jti`` may no longer be used (the verifier's 401 message), or None."""
        if time.monotonic() >= self._next_read:
            await self._read()
        at = self._denied.get(jti)
        if at is None:
            return None
        return f"the token was revoked at {at.strftime('%Y-%m-%dT%H:%M:%SZ')}"

    def add(self, jti: str, at: datetime) -> None:
        """Refuse ``jti`` in this process at once (the revoking process needs no refresh)."""
        self._denied[jti] = at

    async def _read(self) -> None:
        async with self._lock:
            if time.monotonic() < self._next_read:
                return  # another request read it while this one waited
            started = time.monotonic()
            try:
                async with self._db.read(autocommit=True) as conn:
                    denied = await registry.revoked(conn, alive_at=datetime.now(UTC))
            except (DriverError, OSError) as exc:
                self._next_read = time.monotonic() + self.RETRY_SECONDS
                if not self._loaded:
                    raise Unavailable("the revoked tokens cannot be read from the index") from exc
                log.warning("cannot refresh the revoked tokens (keeping the last read): %s", exc)
                return
            self._denied = denied
            self._loaded = True
            # from the start of the read: a revocation committed during it is seen next time
            self._next_read = started + self._refresh


class TokenService:
    """Issues, lists and revokes the embedded issuer's tokens; the deny list's owner."""

    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        *,
        signer: Callable[[], TokenIssuer] | None,
        mapping: ClaimMapping | None = None,
        refresh_seconds: float = 5.0,
    ) -> None:
        self._db = db
        self._audit = audit
        self._signer = signer
        self._issuer: TokenIssuer | None = None
        self._mapping = mapping or ClaimMapping()
        self.revocations = RevocationList(db, refresh_seconds=refresh_seconds)

    def _issuer_now(self) -> TokenIssuer:
        if self._signer is None:
            raise NotIssuer(
                "the embedded issuer is off (LIGHTBOX_AUTH__LOCAL_KEY=false): tokens come from "
                "the OpenID Connect issuer"
            )
        if self._issuer is None:
            self._issuer = self._signer()
        return self._issuer

    async def issue(
        self,
        kind: TokenKind | str,
        subject: str,
        scopes: Sequence[str],
        ttl: timedelta | int | float,
        *,
        studies: Sequence[str] = (),
        patients: Sequence[str] = (),
        created_by: str | None = None,
        audit: WriteAudit | None = None,
    ) -> IssuedToken:
        """Record and sign a token; :class:`~app.errors.BadRequest` names what is wrong.

        ``audit`` is the front end's write (HTTP: its request row stands for the journal row);
        without it the service chains the ``token-issued`` row itself.
        """
        try:
            kind = TokenKind(kind)
        except ValueError:
            raise BadRequest(
                f"unknown token kind {kind!r} ({', '.join(k.value for k in TokenKind)})"
            ) from None
        name = _text(subject, "the subject", required=True)
        assert name is not None
        granted = _scopes(scopes)
        lifetime = _ttl(ttl)  # whole seconds (the token's exp is)
        study_uids, patient_ids = _studies(studies), _patients(patients)
        if kind is TokenKind.SHARE and study_uids is None and patient_ids is None:
            raise BadRequest("a share token must name the studies or patients it shares")
        issuer = self._issuer_now()
        now = datetime.now(UTC)  # kept whole: the listing orders tokens by it
        whole = now.replace(microsecond=0)  # the token's iat and exp are whole seconds
        record = TokenRecord(
            jti=uuid.uuid4().hex,
            kind=kind.value,
            subject=name,
            scopes=granted,
            study_uids=study_uids,
            patient_ids=patient_ids,
            issued_at=now,
            expires_at=whole + lifetime,
            created_by=_text(created_by, "the creator"),
        )
        write = audit or self._audit.for_write(actor=record.created_by)
        try:
            async with self._db.write() as conn:
                await registry.add(conn, record)
                await write.journal(conn, self._event("token-issued", record))
        except DriverError as exc:
            log.error("cannot record an issued token: %s", exc)
            raise Unavailable("the token could not be recorded in the index") from exc
        if audit is None:
            await self._audit.record(
                self._event("token-issued", record, actor=record.created_by, write=write)
            )
        token = issuer.issue(
            record.subject,
            record.scopes,
            int(lifetime.total_seconds()),
            study_uids=record.study_uids or (),
            patient_ids=record.patient_ids or (),
            mapping=self._mapping,
            now=whole.timestamp(),
            jti=record.jti,
        )
        return IssuedToken(token, record)

    async def list(
        self, filters: TokenSearch | None = None, *, limit: int = 100, offset: int = 0
    ) -> tuple[list[TokenRecord], int]:
        """One page of the recorded tokens (newest first) and the number matching."""
        async with self._db.read() as conn:
            return await registry.search(
                conn, filters or TokenSearch(), now=datetime.now(UTC), limit=limit, offset=offset
            )

    async def get(self, jti: str) -> TokenRecord:
        """The record of ``jti``; :class:`~app.errors.NotFound` when no such token was issued."""
        found = None
        if 0 < len(jti) <= _JTI_MAX:
            async with self._db.read() as conn:
                found = await registry.get(conn, jti)
        if found is None:
            raise NotFound(f"no token {jti!r} was issued here")
        return found

    async def revoke(
        self,
        jti: str,
        *,
        by: str | None,
        reason: str | None = None,
        audit: WriteAudit | None = None,
    ) -> TokenRecord:
        """Revoke ``jti`` (every verifier refuses it within the refresh interval, this process
        at once); revoking it again changes nothing. :class:`~app.errors.NotFound` when no such
        token was issued."""
        why = _text(reason, "the reason")
        who = _text(by, "the revoker")
        if not 0 < len(jti) <= _JTI_MAX:
            raise NotFound(f"no token {jti!r} was issued here")
        now = datetime.now(UTC)
        write = audit or self._audit.for_write(actor=who)
        try:
            async with self._db.write() as conn:
                revoked = await registry.revoke(conn, jti, at=now, by=who, reason=why)
                if revoked is None:
                    raise NotFound(f"no token {jti!r} was issued here")
                record, newly = revoked
                if newly:
                    await write.journal(conn, self._event("token-revoked", record, reason=why))
        except DriverError as exc:
            log.error("cannot revoke a token: %s", exc)
            raise Unavailable("the token could not be revoked in the index") from exc
        assert record.revoked_at is not None
        self.revocations.add(record.jti, record.revoked_at)
        if newly and audit is None:
            await self._audit.record(
                self._event("token-revoked", record, actor=who, write=write, reason=why)
            )
        return record

    async def admin_exists(self) -> bool:
        """Whether an unrevoked, unexpired token grants admin (else serve says how to get one)."""
        async with self._db.read() as conn:
            return await registry.any_alive_with_scope(
                conn, Permission.ADMIN.value, now=datetime.now(UTC)
            )

    @staticmethod
    def _event(
        action: str,
        record: TokenRecord,
        *,
        actor: str | None = None,
        write: WriteAudit | None = None,
        reason: str | None = None,
    ) -> AuditRecord:
        detail = _detail(record)
        if action == "token-revoked" and reason:
            detail += f" reason={reason}"
        single_study = (
            record.study_uids[0] if record.study_uids and len(record.study_uids) == 1 else None
        )
        single_patient = (
            record.patient_ids[0] if record.patient_ids and len(record.patient_ids) == 1 else None
        )
        return AuditRecord(
            action=action,
            outcome=Outcome.SUCCESS,
            actor=actor,
            study_uid=single_study,
            patient_id=single_patient,
            detail=detail,
            supersedes=write.release() if write is not None else (),
        )
