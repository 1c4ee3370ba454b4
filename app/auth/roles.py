"""The roles of embedded users, each a set of the permissions tokens carry (GEN-06).

A role is what an administrator gives a person (``lightbox user add NAME --role ...``); the
session token of that person carries the role's permissions, so the API and the pages check the
same :class:`~app.auth.principal.Permission` values whatever the way in.
"""

from enum import StrEnum

from app.auth.principal import Permission

__all__ = ["Role"]


class Role(StrEnum):
    """A user's role: what they may do."""

    #: search, view, download
    READER = "reader"
    #: also store (upload, a viewer's measurements and reports)
    UPLOADER = "uploader"
    #: also delete
    EDITOR = "editor"
    #: everything, the audit trail and the users included
    ADMIN = "admin"

    @property
    def permissions(self) -> frozenset[Permission]:
        """The role's permissions.

        >>> sorted(p.value for p in Role.UPLOADER.permissions)
        ['read', 'write']
        >>> Role.ADMIN.permissions == frozenset(Permission)
        True
        """
        return _PERMISSIONS[self]

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]


_PERMISSIONS = {
    Role.READER: frozenset({Permission.READ}),
    Role.UPLOADER: frozenset({Permission.READ, Permission.WRITE}),
    Role.EDITOR: frozenset({Permission.READ, Permission.WRITE, Permission.DELETE}),
    Role.ADMIN: frozenset(Permission),
}
_DESCRIPTIONS = {
    Role.READER: "search, view and download studies",
    Role.UPLOADER: "also store instances",
    Role.EDITOR: "also delete studies, series and instances",
    Role.ADMIN: "everything, including the audit trail and the users",
}
