"""Who is calling and what they may do: :class:`Principal` and :class:`Permission`."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from app.dicom.query import StudyRestriction

__all__ = ["ANONYMOUS", "SYSTEM", "ClaimMapping", "Permission", "Principal"]


class Permission(StrEnum):
    """What a route needs (GEN-06); each is granted on its own, none implies another."""

    READ = "read"
    WRITE = "write"
    DELETE = "delete"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller (or the configured anonymous reader).

    ``study_uids`` / ``patient_ids`` are a scoped grant: when set, the caller sees only those
    studies (a share link for one study, a referring physician's patients).
    """

    subject: str
    permissions: frozenset[Permission]
    client_id: str | None = None
    study_uids: frozenset[str] | None = None
    patient_ids: frozenset[str] | None = None
    token_id: str | None = None
    anonymous: bool = False

    def allows(self, permission: Permission) -> bool:
        return permission in self.permissions

    @property
    def restricted(self) -> bool:
        return self.study_uids is not None or self.patient_ids is not None

    def restriction(self) -> StudyRestriction | None:
        """The scoped grant as the searches' filter, ``None`` when the caller sees everything.

        >>> Principal("a", frozenset(), study_uids=frozenset({"1.2"})).restriction()
        StudyRestriction(study_uids=frozenset({'1.2'}), patient_ids=None)
        >>> Principal("a", frozenset()).restriction() is None
        True
        """
        if not self.restricted:
            return None
        return StudyRestriction(study_uids=self.study_uids, patient_ids=self.patient_ids)


#: the caller when anonymous read is configured
ANONYMOUS = Principal("anonymous", frozenset({Permission.READ}), anonymous=True)
#: the caller when access control is switched off (tests, a closed network by choice)
SYSTEM = Principal("unauthenticated", frozenset(Permission), anonymous=True)


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    """A claim by dotted path: ``realm_access.roles``."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _strings(value: Any) -> list[str]:
    """A claim as a list of strings: a space-separated string (OAuth ``scope``) or a list."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list | tuple):
        return [v for v in value if isinstance(v, str)]
    return []


@dataclass(frozen=True, slots=True)
class ClaimMapping:
    """How a token's claims become permissions and grants (configurable per identity provider)."""

    #: claims holding scopes or roles (dotted paths, e.g. ``realm_access.roles``)
    permission_claims: tuple[str, ...] = ("scope", "scp", "roles")
    #: claim value -> permission (e.g. ``user/ImagingStudy.read`` -> read)
    values: Mapping[str, Permission] = None  # type: ignore[assignment]
    study_claim: str = "lightbox_studies"
    patient_claim: str = "lightbox_patients"
    client_claims: tuple[str, ...] = ("azp", "client_id")

    def __post_init__(self) -> None:
        if self.values is None:
            object.__setattr__(self, "values", {p.value: p for p in Permission})

    def principal(self, claims: Mapping[str, Any]) -> Principal:
        """The caller a verified token describes.

        >>> m = ClaimMapping(permission_claims=("realm_access.roles",),
        ...                  values={"pacs-reader": Permission.READ})
        >>> p = m.principal({"sub": "u1", "realm_access": {"roles": ["pacs-reader", "x"]}})
        >>> sorted(str(x) for x in p.permissions), p.restricted
        (['read'], False)
        """
        granted: set[Permission] = set()
        for path in self.permission_claims:
            for value in _strings(_claim(claims, path)):
                permission = self.values.get(value)
                if permission is not None:
                    granted.add(permission)
        client = next(
            (c for c in (_claim(claims, p) for p in self.client_claims) if isinstance(c, str)),
            None,
        )
        jti = claims.get("jti")
        return Principal(
            subject=str(claims.get("sub") or client or "unknown"),
            permissions=frozenset(granted),
            client_id=client,
            study_uids=_grant(_claim(claims, self.study_claim)),
            patient_ids=_grant(_claim(claims, self.patient_claim)),
            token_id=jti if isinstance(jti, str) else None,
        )


def _grant(value: Any) -> frozenset[str] | None:
    """A grant claim; present but empty (or malformed) grants nothing rather than everything."""
    if value is None:
        return None
    items: Iterable[str] = _strings(value) if isinstance(value, list | tuple) else [str(value)]
    return frozenset(items)
