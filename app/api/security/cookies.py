"""``Set-Cookie`` values of Lightbox's own cookies (the session, a share's token, the sign-in
form's nonce, an OpenID Connect sign-in's transaction): always HttpOnly (scripts never see
them), ``Secure`` under HTTPS, and a ``Max-Age`` (0 removes the cookie)."""

from typing import Literal


def cookie_header(
    name: str,
    value: str,
    *,
    path: str,
    max_age: int,
    secure: bool,
    same_site: Literal["Lax", "Strict"] = "Lax",
) -> str:
    attributes = [
        f"{name}={value}",
        f"Path={path}",
        f"Max-Age={max(0, max_age)}",
        "HttpOnly",
        f"SameSite={same_site}",
    ]
    if secure:
        attributes.append("Secure")
    return "; ".join(attributes)
