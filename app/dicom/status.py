"""DIMSE status codes used as STOW-RS FailureReason / WarningReason (PS3.7 Annex C, PS3.4 B.2-1).

The same numbers are the C-STORE response statuses, so one code names one outcome on both front
ends (PS3.18 Annex I, Table I.2-1 and I.2-2).
"""

from enum import IntEnum


class Status(IntEnum):
    """DIMSE / STOW-RS status values (PS3.7 C, PS3.4 Table B.2-1, PS3.18 Table I.2-2)."""

    SUCCESS = 0x0000
    # PS3.7 C.4 general failures
    PROCESSING_FAILURE = 0x0110
    DUPLICATE_SOP_INSTANCE = 0x0111
    NO_SUCH_SOP_INSTANCE = 0x0112
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    NOT_AUTHORIZED = 0x0124
    # PS3.4 Table B.2-1 storage failures
    OUT_OF_RESOURCES = 0xA700
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    CANNOT_UNDERSTAND = 0xC000
    TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122  # PS3.18 Table I.2-2
    # PS3.4 Table B.2-1 warnings
    COERCION_OF_DATA_ELEMENTS = 0xB000
    ELEMENTS_DISCARDED = 0xB006
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS_WARNING = 0xB007


class QueryRetrieveStatus(IntEnum):
    """C-FIND, C-MOVE and C-GET response statuses (PS3.4 Tables C.4-1, C.4-2, C.4-3; PS3.7
    Annex C)."""

    SUCCESS = 0x0000
    #: a match (C-FIND), or sub-operations continuing (C-MOVE, C-GET)
    PENDING = 0xFF00
    #: a match, and one or more optional keys were not supported (C-FIND)
    PENDING_UNSUPPORTED_KEYS = 0xFF01
    CANCEL = 0xFE00
    #: sub-operations complete, one or more failures or warnings (C-MOVE, C-GET)
    SUBOPERATIONS_WARNING = 0xB000
    #: out of resources (C-FIND)
    OUT_OF_RESOURCES = 0xA700
    #: out of resources: unable to calculate the number of matches (C-MOVE, C-GET)
    UNABLE_TO_CALCULATE_MATCHES = 0xA701
    #: out of resources: unable to perform the sub-operations (C-MOVE, C-GET)
    UNABLE_TO_PERFORM_SUBOPERATIONS = 0xA702
    #: move destination unknown (C-MOVE)
    MOVE_DESTINATION_UNKNOWN = 0xA801
    IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    UNABLE_TO_PROCESS = 0xC000
