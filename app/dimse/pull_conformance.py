"""The conformance statement's section on Lightbox as a Query/Retrieve SCU: ``lightbox pull``
(and ``POST /api/jobs/pull``) migrating a legacy PACS (:mod:`app.dimse.scu`,
:mod:`app.dimse.pull`)."""

from collections.abc import Callable

from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from app.config import Settings
from app.dimse.scu import MAX_CONTEXTS
from app.services.pull import MAX_CONCURRENCY, UIDS_PER_REQUEST

__all__ = ["PULL_SECTIONS"]


def _pull(settings: Settings) -> list[str]:
    pull, title = settings.dimse.pull, settings.dimse.ae_title
    models = (
        StudyRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelGet,
        StudyRootQueryRetrieveInformationModelMove,
    )
    return [
        "### 8.8 Query/Retrieve SCU: migration from another archive (`lightbox pull`)",
        "",
        "| SOP class | UID | role |",
        "| --- | --- | --- |",
        *(f"| {uid.name} | `{uid}` | SCU |" for uid in models),
        "| the storage SOP classes the source lists for a study | | SCP (C-GET, role selection) |",
        "",
        f"- Lightbox requests associations as `{title}` to a registered remote AE (over TLS "
        f"when it is marked so), at most {pull.concurrency} at once by default "
        f"(`LIGHTBOX_DIMSE__PULL__CONCURRENCY`, up to {MAX_CONCURRENCY}), one per study or "
        f"series in progress; maximum PDU received {pull.max_pdu} bytes; ACSE, DIMSE and "
        f"network timeouts {pull.timeout:g} s.",
        "- C-FIND: STUDY level with the matching keys asked for (patient and study keys), "
        "SERIES level (a study's series, with the series keys asked for when the unit of work "
        "is the series), IMAGE level per series (SOP Instance UID, SOP Class UID): hierarchical "
        "queries. A failure status, or no answer, fails the job (the search) or the study.",
        "- C-GET: STUDY (or SERIES) level for a study none of whose instances Lightbox holds; "
        f"else IMAGE level with lists of at most {UIDS_PER_REQUEST} SOP Instance UIDs per series,"
        " only those not held. Besides the GET model, the association proposes for each SOP "
        "class the source listed, with the SCP role (role selection), the transfer syntaxes of "
        "8.3 and the other encapsulated ones ingest reads (the retired JPEG processes), each "
        f"syntax in a context of its own as far as {MAX_CONTEXTS} contexts allow and the rest "
        "together, so instances arrive as the source holds them (every standard storage class "
        "with every syntax in one context when the source lists no SOP class).",
        "- C-STORE sub-operations of a C-GET are answered 0x0000 once the data set is spooled "
        "and handed to the ingest of STOW-RS (its checks and policies; whether each instance "
        "was stored is then read in the index), 0xA700 when it cannot be spooled, 0x0110 when "
        "the ingest cannot take it, 0xC000 for malformed UIDs in the command.",
        f"- C-MOVE (`--method move`): the same identifiers, Move Destination `{title}` (the "
        "listener's C-STORE SCP, 8.4, receives the instances).",
        "- A cancelled or interrupted job aborts its associations (A-ABORT).",
        "",
    ]


#: the sections on Lightbox as a Query/Retrieve SCU, in order
PULL_SECTIONS: list[Callable[[Settings], list[str]]] = [_pull]
