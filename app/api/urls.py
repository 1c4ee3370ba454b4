"""Absolute URLs we emit (RetrieveURL, Content-Location, BulkDataURI), GEN-01.

Built from ``public_base_url`` when configured; otherwise from the request: its scheme and its
``Host`` header, honouring ``X-Forwarded-Proto`` / ``X-Forwarded-Host`` / ``X-Forwarded-Port``
only when the peer is a trusted proxy.

A ``Host`` without a port should mean the scheme's default port (RFC 9110 §7.2), but
dicomweb-client sends its host name without the port whatever the URL it was given (its
``headers['Host'] = self.host``), so a server on port 8080 would send it URLs on port 80. When a
client that is not a trusted proxy sends a ``Host`` without a port, the port is the one the
connection arrived on (when it is not the scheme's default). Behind a port mapping (``docker
run -p 80:8080``) that is the container's port, not the one clients use: set
``public_base_url`` there, as behind any proxy that is not trusted. A trusted proxy that drops
the port (nginx's ``$host``; prefer ``$http_host``) sends it as ``X-Forwarded-Port``.
"""

from fastapi import Request

from app.config import Settings

__all__ = ["instance_url", "service_base", "study_url"]

_DEFAULT_PORTS = {"http": "80", "https": "443"}


def _with_port(host: str, port: str | None) -> str:
    """``host`` with ``port`` when it names none itself (an IPv6 literal keeps its brackets).

    >>> _with_port("pacs.example.org", "8443"), _with_port("pacs:9000", "8443")
    ('pacs.example.org:8443', 'pacs:9000')
    >>> _with_port("[::1]", "8080"), _with_port("pacs", "x")
    ('[::1]:8080', 'pacs')
    """
    if not port or not port.isdigit() or host.rsplit("]", 1)[-1].count(":") > 0:
        return host
    return f"{host}:{port}"


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
        fwd_port = request.headers.get("x-forwarded-port")
        if proto:
            scheme = proto.split(",")[0].strip()
        if fwd_host:
            host = fwd_host.split(",")[0].strip()
        if fwd_port:
            port = fwd_port.split(",")[0].strip()
            host = _with_port(host, None if port == _DEFAULT_PORTS.get(scheme) else port)
    else:
        server = request.scope.get("server")
        local = str(server[1]) if server and server[1] is not None else None
        host = _with_port(host, None if local == _DEFAULT_PORTS.get(scheme) else local)
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
