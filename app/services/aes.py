"""Remote application entities: the DICOM peers Lightbox talks to by AE title.

A C-MOVE names its destination by AE title only (DIMSE-11), a Storage Commitment report may have to
go back on a new association (DIMSE-06), and ``lightbox pull`` names its source: each needs the
peer's address. Peers come from two places: the settings (``dimse.remote_aes``, static, for
deployments configured as code) and, once the remote-AE registry lands, the index (``lightbox ae``,
``/api/aes``), so every replica sees the same ones.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from app.config import RemoteAeSettings


@dataclass(frozen=True, slots=True)
class RemoteAe:
    """A peer: where to open an association to reach ``ae_title``."""

    ae_title: str
    host: str
    port: int
    tls: bool = False
    description: str = ""
    source: str = "settings"  # "settings" or "index": settings entries cannot be edited at run time


class RemoteAeService:
    """Looks peers up by AE title (exact match: AE titles are case-sensitive, PS3.5)."""

    def __init__(self, configured: Iterable[RemoteAeSettings] = ()) -> None:
        self._configured = {
            entry.ae_title: RemoteAe(
                entry.ae_title, entry.host, entry.port, entry.tls, entry.description
            )
            for entry in configured
        }

    async def get(self, ae_title: str) -> RemoteAe | None:
        return self._configured.get(ae_title.strip())

    async def list(self) -> list[RemoteAe]:
        return sorted(self._configured.values(), key=lambda ae: ae.ae_title)
