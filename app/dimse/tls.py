"""TLS for DIMSE (PS3.15 B.1, DIMSE-01): the listener's context, and the one for associations we
open (Storage Commitment reports, C-MOVE sub-operations, ``lightbox pull``) to peers marked
``tls``.

pynetdicom wraps each accepted socket with ``SSLContext.wrap_socket`` in its accepting thread,
so the handshake runs there: a caller that connects and never says hello would hold every later
connection up. :class:`ServerContext` gives the socket a deadline (the network timeout) before the
handshake, through ``wrap_socket``, the standard library's documented way in.
"""

import socket
import ssl
from typing import Any

from app.config import DimseSettings

__all__ = ["ServerContext", "client_context", "server_context"]


class ServerContext(ssl.SSLContext):
    """An ``SSLContext`` whose server sockets get a deadline before their handshake."""

    handshake_timeout: float | None = None

    def wrap_socket(self, sock: socket.socket, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        if kwargs.get("server_side") and self.handshake_timeout is not None:
            sock.settimeout(self.handshake_timeout)
        return super().wrap_socket(sock, *args, **kwargs)


def server_context(settings: DimseSettings) -> ServerContext | None:
    """The listener's TLS context, or None when DIMSE runs in the clear.

    With ``tls_ca`` every caller must present a certificate that chains to it (the DICOM TLS
    profiles authenticate both ends); TLS 1.2 at least.
    """
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ServerContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    if settings.tls_ca is not None:
        context.load_verify_locations(cafile=settings.tls_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    context.handshake_timeout = settings.network_timeout
    return context


def client_context(settings: DimseSettings) -> ssl.SSLContext:
    """The context for associations we open to a peer marked ``tls``.

    The peer's certificate is checked against ``tls_ca`` (else the system's CAs); its host name
    is not, as DICOM peers are configured by address and their certificates name the device.
    Our certificate, when configured, is offered for the peer to check.
    """
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH,
        cafile=str(settings.tls_ca) if settings.tls_ca is not None else None,
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    if settings.tls_cert is not None and settings.tls_key is not None:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context
