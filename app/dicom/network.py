"""A DICOM network peer's address: its AE title (PS3.5 §6.2, AE VR), host and TCP port (PS3.8).

The checks are those of a registry entry (``lightbox ae add``, ``/api/aes``): each refusal
names the field and the rule, so an administrator can correct it.
"""

import ipaddress
import re
from typing import Final

from app.errors import BadRequest

__all__ = ["MAX_AE_TITLE", "validate_ae_title", "validate_host", "validate_port"]

#: PS3.5 Table 6.2-1: an AE value is at most 16 characters
MAX_AE_TITLE: Final = 16
#: the default character repertoire without backslash and control characters (PS3.5 AE VR)
_AE_CHARS: Final = re.compile(r"[ -\[\]-~]+")
#: a host name: dot-separated labels of letters, digits and hyphens (RFC 1123 §2.1)
_LABEL: Final = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def validate_ae_title(value: object) -> str:
    """An AE title, leading and trailing spaces removed (they are not significant), or
    :class:`~app.errors.BadRequest` naming the rule it breaks.

    >>> validate_ae_title(" CT_SCANNER1 ")
    'CT_SCANNER1'
    >>> validate_ae_title("A" * 17)
    Traceback (most recent call last):
    ...
    app.errors.BadRequest: invalid AE title: at most 16 characters (PS3.5 AE VR), got 17
    >>> validate_ae_title("BACK\\\\SLASH")
    Traceback (most recent call last):
    ...
    app.errors.BadRequest: invalid AE title: no backslash or control characters (PS3.5 AE VR)
    """
    if not isinstance(value, str):
        raise BadRequest("invalid AE title: a string is required")
    title = value.strip(" ")
    if not title:
        raise BadRequest("invalid AE title: it cannot be blank")
    if len(title) > MAX_AE_TITLE:
        raise BadRequest(
            f"invalid AE title: at most {MAX_AE_TITLE} characters (PS3.5 AE VR), got {len(title)}"
        )
    if _AE_CHARS.fullmatch(title) is None:
        raise BadRequest("invalid AE title: no backslash or control characters (PS3.5 AE VR)")
    return title


def validate_host(value: object) -> str:
    """A host name or an IPv4/IPv6 address, or :class:`~app.errors.BadRequest`.

    >>> validate_host("pacs.example.org"), validate_host("10.0.0.7"), validate_host("::1")
    ('pacs.example.org', '10.0.0.7', '::1')
    >>> validate_host("pacs/../x")
    Traceback (most recent call last):
    ...
    app.errors.BadRequest: invalid host 'pacs/../x': not a host name or an IP address
    """
    if not isinstance(value, str) or not value.strip():
        raise BadRequest("invalid host: a host name or an IP address is required")
    host = value.strip()
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise BadRequest(f"invalid host {host[:64]!r}: not a host name or an IP address")
    return host


def validate_port(value: object) -> int:
    """A TCP port, 1 to 65535, or :class:`~app.errors.BadRequest`.

    >>> validate_port(104)
    104
    >>> validate_port(70000)
    Traceback (most recent call last):
    ...
    app.errors.BadRequest: invalid port 70000: from 1 to 65535
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest("invalid port: an integer from 1 to 65535 is required")
    if not 1 <= value <= 65535:
        raise BadRequest(f"invalid port {value}: from 1 to 65535")
    return value
