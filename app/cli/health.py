"""``lightbox healthcheck``: ask the server this machine runs whether it is up (a container's
HEALTHCHECK, compose's health check), on the address, port and scheme its settings give."""

import ipaddress
import sys
from typing import Annotated

import typer

from app.cli.root import cli
from app.config import Settings


def local_url(settings: Settings, path: str = "/healthz") -> str:
    """Where this machine reaches the server the settings describe: a wildcard bind address is
    reached on loopback; https when the settings name a TLS certificate.

    >>> local_url(Settings(host="0.0.0.0", port=8443, ssl_certfile="c.pem"))
    'https://127.0.0.1:8443/healthz'
    >>> local_url(Settings(host="::", port=80), "/readyz")
    'http://[::1]:80/readyz'
    """
    host = settings.host
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None and address.is_unspecified:
        host = "::1" if address.version == 6 else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if settings.ssl_certfile else "http"
    return f"{scheme}://{host}:{settings.port}{path}"


@cli.command()
def healthcheck(
    ready: Annotated[
        bool, typer.Option(help="ask /readyz (index and storage reachable), not /healthz")
    ] = False,
    timeout: Annotated[float, typer.Option(min=0.1, help="seconds to wait for the answer")] = 4.0,
) -> None:
    """Exit 0 when the local server answers its health check with 200, else 1."""
    import httpx

    url = local_url(Settings(), "/readyz" if ready else "/healthz")
    try:
        # our own server on loopback: its certificate names the public host, not 127.0.0.1
        answer = httpx.get(url, timeout=timeout, verify=False)
    except httpx.HTTPError as exc:
        print(f"unhealthy: {url}: {type(exc).__name__}: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    if answer.status_code != 200:
        print(f"unhealthy: {url} answered {answer.status_code}", file=sys.stderr)
        raise typer.Exit(1)
    print(f"healthy: {url}")
