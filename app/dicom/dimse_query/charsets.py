"""Character sets of C-FIND identifiers and matches (PS3.5 §6.1, PS3.3 §C.12.1.1.2).

An identifier's text is decoded with its SpecificCharacterSet, code extensions (ISO 2022 escape
sequences) included (:func:`element_text`); a match is answered in the request's character set
when every text value of it can be encoded there, else in ISO_IR 192, UTF-8
(:func:`response_character_set`).
"""

from collections.abc import Mapping, Sequence
from typing import Any, Final

from pydicom.charset import (
    STAND_ALONE_ENCODINGS,
    convert_encodings,
    custom_encoders,
    decode_bytes,
    python_encoding,
)
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.valuerep import PN_DELIMS, TEXT_VR_DELIMS

from app.dicom.dimse_query.encoding import TEXT_VRS, texts
from app.dicom.dimse_query.models import SPECIFIC_CHARACTER_SET, InvalidIdentifier
from app.dicom.query import vr_of

__all__ = ["UTF8", "character_sets", "element_text", "response_character_set"]

#: the character set a match falls back to (PS3.5 §6.1.2.5.3: UTF-8)
UTF8: Final = "ISO_IR 192"


def character_sets(identifier: Dataset) -> tuple[str, ...]:
    """The identifier's SpecificCharacterSet terms, checked (:class:`InvalidIdentifier` for an
    unknown term or a stand-alone one with code extensions, PS3.3 §C.12.1.1.2).

    >>> ds = Dataset(); ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    >>> character_sets(ds)
    ('', 'ISO 2022 IR 87')
    >>> character_sets(Dataset())
    ()
    """
    raw = element_text(identifier, SPECIFIC_CHARACTER_SET, ())
    terms = (
        tuple(t.strip() for t in raw) if isinstance(raw, list) else ((raw.strip(),) if raw else ())
    )
    for term in terms:
        if term not in python_encoding:
            raise InvalidIdentifier(
                f"SpecificCharacterSet: unknown character set {term[:24]!r}",
                (SPECIFIC_CHARACTER_SET,),
            )
    if len(terms) > 1 and any(t in STAND_ALONE_ENCODINGS for t in terms):
        raise InvalidIdentifier(
            "SpecificCharacterSet: ISO_IR 192, GB18030 and GBK take no code extensions",
            (SPECIFIC_CHARACTER_SET,),
        )
    return terms


def _decoders(terms: Sequence[str]) -> list[str]:
    """The Python codecs that decode text in ``terms`` (pydicom's)."""
    return convert_encodings(list(terms) or None)


def _encoders(terms: Sequence[str]) -> list[str]:
    """The Python codecs of ``terms`` for encoding: the default repertoire is ASCII only
    (pydicom reads it as Latin-1, lenient; an answer must not claim more than it is)."""
    codecs = _decoders(terms)
    if not terms or terms[0] in ("", "ISO_IR 6", "ISO 2022 IR 6"):
        codecs[0] = "ascii"
    return codecs


def _encodes(codec: str, text: str) -> bool:
    encoder = custom_encoders.get(codec)
    try:
        if encoder is not None:
            encoder(text, errors="strict")
        else:
            text.encode(codec)
    except (UnicodeError, ValueError):
        return False
    return True


def _encodable(text: str, codecs: Sequence[str]) -> bool:
    """Whether ``text`` can be written with ``codecs`` (with code extensions: each character by
    one of them, as pydicom switches between them)."""
    if text.isascii():
        return True
    if any(_encodes(codec, text) for codec in codecs):
        return True
    return len(codecs) > 1 and all(any(_encodes(c, ch) for c in codecs) for ch in text)


def response_character_set(
    elements: Mapping[str, Any], requested: Sequence[str]
) -> tuple[str, ...]:
    """The character set a match (DICOM JSON ``elements``) goes out in: the request's when it
    can encode every text value, else ISO_IR 192 (UTF-8).

    >>> name = {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Müller^Jürgen"}]}}
    >>> response_character_set(name, ["ISO_IR 100"]), response_character_set(name, [])
    (('ISO_IR 100',), ('ISO_IR 192',))
    """
    codecs = _encoders(requested)
    for element in elements.values():
        if not all(_encodable(text, codecs) for text in texts(element)):
            return (UTF8,)
    return tuple(requested)


def element_text(ds: Dataset, tag: int, encodings: Sequence[str]) -> str | list[str] | None:
    """The value of ``tag`` as text (several values: a list), decoded with ``encodings``
    (the request's character set) for text VRs; None when absent or empty."""
    if tag not in ds:
        return None
    elem = ds.get_item(tag)
    if isinstance(elem, RawDataElement):
        vr = str(elem.VR) if elem.VR else vr_of(tag)
        data = elem.value
        if not data:
            return None
        if vr in TEXT_VRS:
            delimiters = (PN_DELIMS | {0x3D} if vr == "PN" else TEXT_VR_DELIMS) | {0x5C}
            text = decode_bytes(data, _decoders(encodings), delimiters)
        else:
            text = data.decode("latin-1")
        text = text.rstrip("\x00")
        values = text.split("\\") if vr not in ("LT", "ST", "UT") else [text]
    else:
        value = elem.value
        if value is None or value == "":
            return None
        values = [str(v) for v in value] if elem.VM > 1 else [str(value)]
    values = [v.strip(" ") for v in values]
    if len(values) == 1:
        return values[0] or None
    return values
