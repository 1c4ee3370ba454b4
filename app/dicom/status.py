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
