"""C-FIND, C-MOVE and C-GET identifiers as the typed query of QIDO-RS, and matches as C-FIND
response identifiers (PS3.4 Annex C; DIMSE-07..13).

One matching engine serves both front ends (DESIGN.md §6): a C-FIND identifier becomes the same
:class:`~app.dicom.query.Query` that QIDO-RS parameters become (:func:`parse_find`), each match
key read by :func:`~app.dicom.query.matcher_for` (single value, wildcard, date and time ranges,
UID lists, universal matching; PS3.4 §C.2.2.2), and the index compiles it (``app.index.search``).
A C-MOVE or C-GET identifier names what to retrieve with its unique keys; :func:`parse_retrieve`
turns it into a query for the studies, series or instances it names, so a retrieve matches
exactly what a C-FIND with the same keys finds.

Hierarchical search only (PS3.4 §C.4.1.3.1.1; relational search needs extended negotiation,
which Lightbox does not accept):

* QueryRetrieveLevel (0008,0052) is one of the model's levels (Patient Root: PATIENT, STUDY,
  SERIES, IMAGE; Study Root: STUDY, SERIES, IMAGE; §C.6.1.1, §C.6.2.1), else 0xA900;
* every level above it carries its unique key as a single value (PatientID for Patient Root,
  StudyInstanceUID, SeriesInstanceUID), else 0xA900;
* a key of a level below the query level is refused (0xA900) with the key named;
* keys of the levels above that are not unique keys are returned, filled from the parent's stored
  attributes, and matched like the others;
* keys Lightbox cannot match on (no index column) or cannot return (not stored at the levels of
  the result) are "optional keys not supported": the matches are sent with 0xFF01 instead of
  0xFF00 (§C.4.1.2.3), the unsupported match keys ignored, the unsupported return keys empty.

Character sets (PS3.5 §6.1, PS3.3 §C.12.1.1.2): an identifier's text is decoded with its
SpecificCharacterSet (ISO 2022 escape sequences included); a match is answered in the request's
character set when every value of it can be encoded there, else in ISO_IR 192 (UTF-8), and says
which in its SpecificCharacterSet.

The modules: :mod:`.models` the information models, SOP classes, unique keys and errors;
:mod:`.identifiers` reading identifiers; :mod:`.charsets` the character sets;
:mod:`.matches` writing matches.
"""

from app.dicom.dimse_query.charsets import UTF8, character_sets, response_character_set
from app.dicom.dimse_query.identifiers import (
    FindRequest,
    RetrieveRequest,
    ReturnKey,
    parse_find,
    parse_retrieve,
)
from app.dicom.dimse_query.matches import SYNTAXES, match_identifier
from app.dicom.dimse_query.models import (
    SOP_CLASSES,
    UNIQUE_KEYS,
    IdentifierMismatch,
    InvalidIdentifier,
    Model,
    Service,
)

__all__ = [
    "SOP_CLASSES",
    "SYNTAXES",
    "UNIQUE_KEYS",
    "UTF8",
    "FindRequest",
    "IdentifierMismatch",
    "InvalidIdentifier",
    "Model",
    "RetrieveRequest",
    "ReturnKey",
    "Service",
    "character_sets",
    "match_identifier",
    "parse_find",
    "parse_retrieve",
    "response_character_set",
]
