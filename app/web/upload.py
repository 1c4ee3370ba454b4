"""The upload page (``/upload``, issue 22 point 4): files, whole folders and ZIP archives dropped
or picked in the browser, stored by STOW-RS in batches (``static/upload.js``).

Nothing here touches the files: the page gives the script the DICOMweb root and the server's
limits, and the script sends the files to ``POST {root}/studies`` itself, with the session
cookie and its CSRF token, so uploads take exactly the path every other STOW-RS client takes
(the ingest service, its checks, its audit). The script reads only what it must: the first
bytes of each file (the ``DICM`` marker and the File Meta group, for the SOP Instance UID) and,
for a ZIP archive, its central directory; every body is a ``Blob`` made of the files
themselves, which the browser streams from disk, so a file of gigabytes is never held in
memory. Per file it shows: stored, already stored (skipped: a search by SOP Instance UID found
it), or refused with the reason (here: not a PS3.10 file, too large, an unsupported ZIP entry;
by the server: the STOW-RS failure reason). A batch that fails on the network is retried, then
left for the Resume button, which first skips what the server stored meanwhile.
"""

from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse

from app.api.deps import SettingsDep
from app.api.security import page
from app.auth.principal import Permission
from app.web.study import dicomweb_path
from app.web.templating import render

router = APIRouter(include_in_schema=False)

#: files per STOW-RS request, and bytes per request (one larger file goes alone)
BATCH_FILES = 25
BATCH_BYTES = 64 * 1024 * 1024


@router.get("/upload", response_class=HTMLResponse, openapi_extra=page(Permission.WRITE))
async def upload_page(request: Request, settings: SettingsDep) -> HTMLResponse:
    limits = settings.limits
    return render(
        request,
        "upload.html",
        {
            "dicomweb": dicomweb_path(request, settings),
            "max_file": min(limits.max_instance_bytes, limits.max_request_bytes),
            "max_request": limits.max_request_bytes,
            "batch_files": BATCH_FILES,
            "batch_bytes": BATCH_BYTES,
        },
    )
