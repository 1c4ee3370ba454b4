"""Associations Lightbox opens itself, as requestor, to a remote AE known by its title
(:class:`~app.services.aes.RemoteAe`): Storage Commitment reports sent back on a new association
(DIMSE-06); C-MOVE destinations and ``lightbox pull`` sources use the same door.

Our AE title, PDU size and timeouts are the listener's; a peer marked ``tls`` is reached over TLS
with :func:`app.dimse.tls.client_context`.
"""

from collections.abc import Sequence
from typing import Any

from pynetdicom import AE
from pynetdicom.association import Association

from app.config import DimseSettings
from app.dimse.sockets import NO_DELAY
from app.dimse.tls import client_context
from app.services.aes import RemoteAe

__all__ = ["associate"]


def associate(
    settings: DimseSettings,
    remote: RemoteAe,
    contexts: Sequence[tuple[str, Sequence[str]]],
    *,
    ext_neg: Sequence[Any] = (),
) -> Association:
    """Request an association with ``remote`` proposing ``contexts`` (abstract syntax,
    transfer syntaxes); check ``is_established`` on the result (a refusal is no exception)."""
    ae = AE(ae_title=settings.ae_title)
    ae.acse_timeout = settings.acse_timeout
    ae.dimse_timeout = settings.dimse_timeout
    ae.network_timeout = settings.network_timeout
    for abstract_syntax, transfer_syntaxes in contexts:
        ae.add_requested_context(abstract_syntax, list(transfer_syntaxes))
    return ae.associate(
        remote.host,
        remote.port,
        ae_title=remote.ae_title,
        max_pdu=settings.max_pdu,
        ext_neg=list(ext_neg) or None,
        evt_handlers=[NO_DELAY],
        tls_args=(client_context(settings), None) if remote.tls else None,  # type: ignore[arg-type]
    )
