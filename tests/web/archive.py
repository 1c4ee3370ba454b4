"""Studies for the page tests: stored through STOW-RS with a bearer token (the way any client
stores them), and the pages' HTML read back."""

import re
from collections.abc import Sequence
from html.parser import HTMLParser
from typing import Any

import httpx
from pydicom.uid import generate_uid

from app.config import Settings
from tests.auth.helpers import Tokens
from tests.factories import make_instance, multipart, stow_headers


async def store(
    http: httpx.AsyncClient, settings: Settings, files: Sequence[bytes], *, by: str = "loader"
) -> None:
    """STOW-RS ``files`` as ``by`` (all stored, or the test fails)."""
    response = await http.post(
        "/dicom-web/studies",
        content=multipart(list(files)),
        headers={**stow_headers(), **Tokens(settings).headers(["write"], subject=by)},
    )
    assert response.status_code == 200, response.text


async def store_study(
    http: httpx.AsyncClient,
    settings: Settings,
    *,
    instances: int = 1,
    by: str = "loader",
    **attributes: Any,
) -> str:
    """A study of ``instances`` CT instances with ``attributes``; its StudyInstanceUID."""
    study = attributes.pop("StudyInstanceUID", generate_uid())
    series = attributes.pop("SeriesInstanceUID", generate_uid())
    files = [
        make_instance(
            StudyInstanceUID=study, SeriesInstanceUID=series, InstanceNumber=n + 1, **attributes
        )
        for n in range(instances)
    ]
    await store(http, settings, files, by=by)
    return str(study)


def study_links(html: str) -> list[str]:
    """The StudyInstanceUIDs the study list links to, in its order."""
    return re.findall(r'<a class="study-link" href="/studies/([0-9.]+)">', html)


def csrf_of(html: str) -> str:
    """The CSRF token a page carries (its meta tag)."""
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert found, "the page carries no CSRF token"
    return found.group(1)


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def text_of(html: str) -> str:
    """A page's text, without its markup (entities decoded)."""
    parser = _Text()
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())
