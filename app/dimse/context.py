"""What every DIMSE handler receives: the services, the bridge into their loop, the settings."""

from dataclasses import dataclass
from typing import Any

from app.config import Settings
from app.dimse.bridge import Bridge
from app.services.container import Services


@dataclass(frozen=True, slots=True)
class Peer:
    """The remote end of an association: the audit's actor and source address (DIMSE-14)."""

    ae_title: str
    address: str
    port: int

    @property
    def actor(self) -> str:
        """How the audit names a DIMSE caller (no OAuth here: the calling AE title)."""
        return f"dimse:{self.ae_title}"

    @classmethod
    def of(cls, event: Any) -> "Peer":
        """The requestor of a pynetdicom event's association (its public ``requestor`` info)."""
        requestor = event.assoc.requestor
        # before negotiation (EVT_REQUESTED: the allow-list check) pynetdicom has not copied the
        # calling AE title from the A-ASSOCIATE-RQ yet; its primitive holds it
        request = requestor.primitive
        title = request.calling_ae_title if request is not None else requestor.ae_title
        if isinstance(title, bytes):  # pynetdicom < 2 gave bytes; 2+ gives str
            title = title.decode("ascii", "replace")
        return cls(str(title).strip(), str(requestor.address), int(requestor.port))


@dataclass(frozen=True, slots=True)
class DimseContext:
    """Handed to each handler (``handler(ctx, event)``) by ``app.dimse.server``."""

    services: Services
    bridge: Bridge
    settings: Settings
