"""Text and documents (REND-01/10): a structured report's content tree as text/plain or
text/html, and the PDF of an Encapsulated PDF object."""

import html
from typing import Any

from pydicom import Dataset

from app.dicom.render.parameters import TEXT_PLAIN


def _concept_name(item: Dataset) -> str:
    """The Code Meaning of an SR item's (or the document's) Concept Name, "" when it has none."""
    if "ConceptNameCodeSequence" in item and len(item.ConceptNameCodeSequence) > 0:
        return str(item.ConceptNameCodeSequence[0].get("CodeMeaning", ""))
    return ""


def _content_lines(items: Any, depth: int) -> list[tuple[int, str, str]]:
    """(depth, concept name, value) of each item of a Content Sequence, depth first."""
    lines: list[tuple[int, str, str]] = []
    for item in items:
        name = _concept_name(item)
        value_type = str(item.get("ValueType", ""))
        value = ""
        if value_type == "TEXT":
            value = str(item.get("TextValue", ""))
        elif value_type == "CODE" and "ConceptCodeSequence" in item:
            value = str(item.ConceptCodeSequence[0].get("CodeMeaning", ""))
        elif value_type == "NUM" and "MeasuredValueSequence" in item:
            measured = item.MeasuredValueSequence[0]
            unit = ""
            if "MeasurementUnitsCodeSequence" in measured:
                unit = str(measured.MeasurementUnitsCodeSequence[0].get("CodeValue", ""))
            value = f"{measured.get('NumericValue', '')} {unit}".strip()
        elif value_type in ("DATE", "TIME", "DATETIME", "UIDREF", "PNAME"):
            keyword = {
                "DATE": "Date",
                "TIME": "Time",
                "DATETIME": "DateTime",
                "UIDREF": "UID",
                "PNAME": "PersonName",
            }[value_type]
            value = str(item.get(keyword, ""))
        lines.append((depth, name, value))
        if "ContentSequence" in item:
            lines.extend(_content_lines(item.ContentSequence, depth + 1))
    return lines


def render_text(ds: Dataset, media_type: str) -> bytes:
    """A structured report's content tree as ``text/plain`` or ``text/html`` (UTF-8)."""
    title = _concept_name(ds)
    lines = _content_lines(ds.get("ContentSequence", []), 0)
    if media_type == TEXT_PLAIN:
        text = [title] if title else []
        for depth, name, value in lines:
            text.append("  " * depth + (f"{name}: {value}" if value else name))
        return ("\n".join(text) + "\n").encode("utf-8")
    body = [f"<h1>{html.escape(title)}</h1>"] if title else []
    body.append("<ul>")
    for depth, name, value in lines:
        label = html.escape(name) + (f": {html.escape(value)}" if value else "")
        body.append(f'<li style="margin-left:{depth * 1.5}em">{label}</li>')
    body.append("</ul>")
    page = (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>'
        + html.escape(title or "Structured report")
        + "</title></head><body>"
        + "".join(body)
        + "</body></html>"
    )
    return page.encode("utf-8")


def encapsulated_pdf(ds: Dataset) -> bytes:
    """The Encapsulated Document of a PDF object, without the padding byte (REND-10)."""
    data = bytes(ds.EncapsulatedDocument)
    length = ds.get("EncapsulatedDocumentLength")
    if length is not None and 0 < int(length) <= len(data):
        return data[: int(length)]
    end = data.rfind(b"%%EOF")
    return data[: end + 5] if end >= 0 else data
