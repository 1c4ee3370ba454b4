"""Share links (issue 22, point 5): a study shown to someone without an account, until the link
expires or is revoked.

A share link carries a token of the embedded issuer (:class:`~app.services.tokens.TokenService`,
kind ``share``): read permission, restricted to one study, with an expiry. The token registry
records who made it; revoking it puts its ``jti`` on the deny list every verifier checks, so the
link stops working everywhere (within the deny list's refresh interval). Its maker sees and
revokes their own links; an administrator sees and revokes every one. The token's subject names
the maker (and whom it is for, when said), so the audit trail's rows of its use read
``share:alice for Dr Who``.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from app.auth.principal import Permission, Principal
from app.dicom.query import StudyRestriction
from app.errors import BadRequest, Forbidden, NotFound
from app.services.audit import AuditLog, Outcome, WriteAudit
from app.services.studies import StudyCatalog, StudyRow
from app.services.tokens import TokenKind, TokenRecord, TokenSearch, TokenService, TokenState

__all__ = ["MAX_DAYS", "MadeLink", "ShareLink", "ShareLinks", "SharePage"]

#: the longest a share link lives
MAX_DAYS: Final = 90
_MAX_LABEL: Final = 64


@dataclass(frozen=True, slots=True)
class ShareLink:
    """A share link as listed (never its token: that is shown once, when made)."""

    jti: str
    study_uid: str
    subject: str
    created_by: str | None
    issued_at: datetime
    expires_at: datetime
    state: TokenState
    revoked_by: str | None

    @classmethod
    def of(cls, record: TokenRecord, now: datetime) -> "ShareLink":
        return cls(
            jti=record.jti,
            study_uid=(record.study_uids or ("",))[0],
            subject=record.subject,
            created_by=record.created_by,
            issued_at=record.issued_at,
            expires_at=record.expires_at,
            state=record.state(now),
            revoked_by=record.revoked_by,
        )


@dataclass(frozen=True, slots=True)
class SharePage:
    """One page of share links and how many there are."""

    links: list[ShareLink]
    total: int


@dataclass(frozen=True, slots=True)
class MadeLink:
    """A share link just made: its token (for the URL, shown once) and its record."""

    token: str
    link: ShareLink
    study: StudyRow


class ShareLinks:
    """Makes, lists and revokes share links on the token registry."""

    def __init__(self, tokens: TokenService, studies: StudyCatalog, audit: AuditLog) -> None:
        self._tokens = tokens
        self._studies = studies
        self._audit = audit

    async def create(
        self,
        study_uid: str,
        *,
        maker: Principal,
        days: int,
        label: str = "",
        audit: WriteAudit | None = None,
    ) -> MadeLink:
        """A link to ``study_uid`` for ``days`` days (404 when the maker cannot see such a
        study; :class:`BadRequest` naming what is wrong)."""
        study = await self._studies.study(study_uid, "", restrict=maker.restriction())
        if not 1 <= days <= MAX_DAYS:
            raise BadRequest(f"a share link lives 1 to {MAX_DAYS} days")
        label = label.strip()
        if len(label) > _MAX_LABEL:
            raise BadRequest(f"the recipient's name is longer than {_MAX_LABEL} characters")
        subject = f"share:{maker.subject}" + (f" for {label}" if label else "")
        issued = await self._tokens.issue(
            TokenKind.SHARE,
            subject,
            [Permission.READ.value],
            timedelta(days=days),
            studies=[study_uid],
            created_by=maker.subject,
            audit=audit,
        )
        return MadeLink(issued.token, ShareLink.of(issued.record, datetime.now(UTC)), study)

    async def list(
        self, *, maker: str | None, active_only: bool = False, limit: int = 100, offset: int = 0
    ) -> SharePage:
        """Share links, newest first: ``maker``'s, or everyone's (``None``, administrators)."""
        state = TokenState.ACTIVE if active_only else None
        search = TokenSearch(kind=TokenKind.SHARE.value, created_by=maker, state=state)
        records, total = await self._tokens.list(search, limit=limit, offset=offset)
        now = datetime.now(UTC)
        return SharePage([ShareLink.of(r, now) for r in records], total)

    async def revoke(
        self, jti: str, *, by: Principal, audit: WriteAudit | None = None
    ) -> ShareLink:
        """Revoke a share link: its maker or an administrator (403 for anyone else; 404 for a
        token that is not a share link)."""
        record = await self._tokens.get(jti)
        if record.kind != TokenKind.SHARE.value:
            raise NotFound(f"no share link {jti!r}")
        if record.created_by != by.subject and not by.allows(Permission.ADMIN):
            raise Forbidden("only the link's maker or an administrator may revoke it")
        revoked = await self._tokens.revoke(
            jti, by=by.subject, reason="share link revoked", audit=audit
        )
        return ShareLink.of(revoked, datetime.now(UTC))

    async def open(self, visitor: Principal, study_uid: str, *, source: str | None) -> datetime:
        """A share link's visitor (its token verified) opening ``study_uid``: 403 unless the
        token is a share link of that study, 404 when the study is gone; when the link expires.
        Audited either way (``share-open``)."""
        restriction: StudyRestriction | None = visitor.restriction()
        try:
            if restriction is None or (
                restriction.study_uids is not None and study_uid not in restriction.study_uids
            ):
                raise Forbidden("this share link is for another study")
            record = await self._tokens.get(visitor.token_id or "")
            if record.kind != TokenKind.SHARE.value:
                raise Forbidden("this token is not a share link")
            study = await self._studies.study(study_uid, "", restrict=restriction)
        except (Forbidden, NotFound) as exc:
            await self.refused(study_uid, exc.message, source=source, actor=visitor)
            raise
        await self._audit.record(
            action="share-open",
            outcome=Outcome.SUCCESS,
            status=200,
            actor=visitor.subject,
            source=source,
            study_uid=study_uid,
            patient_id=study.patient_id or None,
            detail=f"jti={visitor.token_id}",
        )
        return record.expires_at

    async def refused(
        self, study_uid: str, why: str, *, source: str | None, actor: Principal | None = None
    ) -> None:
        """Audit a share link that could not be opened (expired, revoked, another study)."""
        await self._audit.record(
            action="share-open",
            outcome=Outcome.DENIED,
            status=403 if actor is not None else 401,
            actor=actor.subject if actor is not None else None,
            source=source,
            study_uid=study_uid[:64],
            detail=(f"jti={actor.token_id}: " if actor is not None else "") + why[:512],
        )
