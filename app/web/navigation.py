"""Where a page may send the browser next: only to a path of this site (no open redirect)."""

from typing import Final

__all__ = ["HOME", "local_path"]

HOME: Final = "/"
_MAX: Final = 2048


def local_path(value: str | None) -> str:
    """``value`` when it is a path of this site, else the home page.

    >>> local_path("/studies/1.2.3"), local_path("//evil.example/x"), local_path("https://x/")
    ('/studies/1.2.3', '/', '/')
    >>> local_path("/\\\\evil.example"), local_path(None), local_path("/login?next=/")
    ('/', '/', '/')
    """
    if not value or len(value) > _MAX or not value.startswith("/"):
        return HOME
    if value.startswith(("//", "/\\")) or any(c in value for c in "\r\n\t\\"):
        return HOME
    if value == "/login" or value.startswith(("/login?", "/login/", "/logout")):
        return HOME  # never back to signing in or out
    return value
