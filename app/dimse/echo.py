"""C-ECHO SCP on Verification 1.2.840.10008.1.1 (PS3.4 Annex A, DIMSE-02): a peer checks that
it can reach us; the answer is Success, and the check is audited (DIMSE-14)."""

from typing import Any

from app.dicom.status import Status
from app.dimse.audit import record
from app.dimse.context import DimseContext
from app.services.audit import Outcome

__all__ = ["handle_echo"]


def handle_echo(ctx: DimseContext, event: Any) -> int:
    """``EVT_C_ECHO``: 0x0000."""
    record(ctx, event, "echo", Outcome.SUCCESS, status=int(Status.SUCCESS), detail="C-ECHO")
    return int(Status.SUCCESS)
