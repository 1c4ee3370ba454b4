"""Absolute URLs we emit (RetrieveURL, Content-Location, BulkDataURI), GEN-01.

Built from ``public_base_url`` when configured; otherwise from the request, honouring
``X-Forwarded-Proto`` / ``X-Forwarded-Host`` only when the peer is a trusted proxy.
"""

from fastapi import Request

from app.config import Settings


def site_base(request: Request, settings: Settings) -> str:
    """The absolute URL of the site (its web pages), without a trailing slash: the public base
    URL without the DICOMweb root, else the request's scheme and host (a trusted proxy's
    ``X-Forwarded-Proto``/``-Host`` honoured)."""
    if settings.public_base_url:
        base = settings.public_base_url.rstrip("/")
        root = settings.dicomweb_root
        return base[: -len(root)] if root and base.endswith(root) else base
    scheme = request.url.scheme
    host = request.headers.get("host") or request.url.netloc
    client = request.client.host if request.client else None
    if client is not None and client in settings.trusted_proxies:
        proto = request.headers.get("x-forwarded-proto")
        fwd_host = request.headers.get("x-forwarded-host")
        if proto:
            scheme = proto.split(",")[0].strip()
        if fwd_host:
            host = fwd_host.split(",")[0].strip()
    root_path = request.scope.get("root_path", "").rstrip("/")
    return f"{scheme}://{host}{root_path}"


def service_base(request: Request, settings: Settings) -> str:
    """The absolute URL of the DICOMweb service root, without a trailing slash."""
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/")
    return f"{site_base(request, settings)}{settings.dicomweb_root}"


def study_url(base: str, study_uid: str) -> str:
    return f"{base}/studies/{study_uid}"


def instance_url(base: str, study_uid: str, series_uid: str, sop_uid: str) -> str:
    return f"{base}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"
