"""The Lightbox error tree: each error fixes its HTTP status and its DIMSE status.

The DIMSE status doubles as the STOW-RS FailureReason (0008,1197) of an instance that fails with
that error (PS3.18 Annex I). Front ends translate; nothing below ``app.api`` raises HTTP errors.
"""

from typing import ClassVar

from app.dicom.status import Status


class LightboxError(Exception):
    """Base of every error Lightbox raises on purpose."""

    http_status: ClassVar[int] = 500
    dimse_status: ClassVar[Status] = Status.PROCESSING_FAILURE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(LightboxError):
    """The request itself is malformed (PS3.18 §8.6.3)."""

    http_status, dimse_status = 400, Status.CANNOT_UNDERSTAND


class NotFound(LightboxError):
    """The resource does not exist."""

    http_status, dimse_status = 404, Status.NO_SUCH_SOP_INSTANCE


class Forbidden(LightboxError):
    """The caller is known but may not do this (GEN-06)."""

    http_status, dimse_status = 403, Status.NOT_AUTHORIZED


class Conflict(LightboxError):
    """The request clashes with what exists: a name already taken, an entry that cannot be
    changed here, a job another process is running."""

    http_status, dimse_status = 409, Status.PROCESSING_FAILURE


class Gone(LightboxError):
    """The resource was deleted and its tombstone has not expired yet (DEL-04, WADO-05)."""

    http_status, dimse_status = 410, Status.NO_SUCH_SOP_INSTANCE


class MethodNotAllowed(LightboxError):
    """The method is known but switched off by configuration (DEL-02: deletion disabled)."""

    http_status, dimse_status = 405, Status.NOT_AUTHORIZED


class NotAcceptable(LightboxError):
    """No representation the client accepts can be produced (PS3.18 §8.7)."""

    http_status, dimse_status = 406, Status.PROCESSING_FAILURE


class UnsupportedMediaType(LightboxError):
    """The request body's media type is not one we accept (STOW-04)."""

    http_status, dimse_status = 415, Status.PROCESSING_FAILURE


class PayloadTooLarge(LightboxError):
    """The request body exceeds the configured limit (STOW-05)."""

    http_status, dimse_status = 413, Status.OUT_OF_RESOURCES


class RequestTimeout(LightboxError):
    """The client stopped sending its request: the body stalled (``server.body_timeout``)."""

    http_status, dimse_status = 408, Status.PROCESSING_FAILURE


class DecodedSizeTooLarge(LightboxError):
    """Decoding the pixel data would allocate more than the configured limit (issue 19).

    Raised from the Image Pixel attributes (or a codestream header) before any decoder runs. A
    route with another representation to offer (the stored transfer syntax) answers 406 instead,
    with the same reason.
    """

    http_status, dimse_status = 413, Status.OUT_OF_RESOURCES


class DecoderFailed(LightboxError):
    """The decoder process stopped while decoding (a codec crash, or memory it could not get).

    The pixel data looked decodable but could not be decoded: 422 names the content, not the
    server, and the server itself keeps running (decoders run in worker processes).
    """

    http_status, dimse_status = 422, Status.PROCESSING_FAILURE


class Unavailable(LightboxError):
    """A back end (index or object store) cannot be reached."""

    http_status, dimse_status = 503, Status.OUT_OF_RESOURCES


# --- per-instance ingest failures (reported inside a STOW response, not as an HTTP status) ---


class InstanceRejected(LightboxError):
    """One instance of a STOW request or C-STORE could not be stored."""

    http_status, dimse_status = 409, Status.PROCESSING_FAILURE
    #: True when the failure is a syntax failure of the part itself (STOW-15: 400 vs 409)
    syntax: ClassVar[bool] = False


class InvalidInstance(InstanceRejected):
    """The part is not a parseable DICOM instance with the required UIDs (STOW-06)."""

    dimse_status = Status.CANNOT_UNDERSTAND
    syntax = True


class InstanceUidMismatch(InvalidInstance):
    """The data set's SOPInstanceUID differs from the one its File Meta announces
    (MediaStorageSOPInstanceUID). STOW refuses the part as any unreadable one (0xC000); a
    C-STORE, whose File Meta Lightbox writes from the command, answers :class:`DataSetMismatch`.
    """


class DataSetMismatch(InstanceRejected):
    """A C-STORE data set that is not the instance the command announced: its SOP Class UID or
    SOP Instance UID differs from the Affected SOP Class / Instance UID (PS3.4 Table B.2-1,
    0xA900 "Data Set does not match SOP Class")."""

    dimse_status = Status.DATA_SET_DOES_NOT_MATCH_SOP_CLASS


class TransferSyntaxNotSupported(InstanceRejected):
    """The transfer syntax is unknown or cannot be decoded (STOW-08, 0xC122)."""

    dimse_status = Status.TRANSFER_SYNTAX_NOT_SUPPORTED
    syntax = True


class SopClassNotSupported(InstanceRejected):
    """The SOP class is not on the allow-list (STOW-08, 0x0122)."""

    dimse_status = Status.SOP_CLASS_NOT_SUPPORTED


class StudyMismatch(InstanceRejected):
    """The instance's StudyInstanceUID differs from the target study (STOW-07, 0x0110)."""

    dimse_status = Status.PROCESSING_FAILURE


class HierarchyConflict(InstanceRejected):
    """The series or patient already belongs elsewhere (STOW-10, 0x0110)."""

    dimse_status = Status.PROCESSING_FAILURE


class DuplicateInstance(InstanceRejected):
    """Different content under an existing SOP Instance UID (STOW-09, 0x0111)."""

    dimse_status = Status.DUPLICATE_SOP_INSTANCE


class OutOfResources(InstanceRejected):
    """Storage or a size limit refused the instance (STOW-08, 0xA700)."""

    dimse_status = Status.OUT_OF_RESOURCES


class UnindexableInstance(InstanceRejected):
    """The index database refused a value of the instance (the data, not its resources).

    Ingest makes every value storable beforehand (issue 19), so this one is a defect.
    """

    dimse_status = Status.CANNOT_UNDERSTAND
