"""A finished request as its audit event (:func:`request_event`): the action of its route
(:func:`action_for`), outcome and status, the UIDs in its path or query, what a search looked
for, and the journal rows of a write it stands for.

A HEAD (:mod:`app.api.head`) is recorded with the action ``head``: it sends no data, so it is no
"Instances Accessed" read.
"""

import functools
import re
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qsl

from app.auth.principal import Principal
from app.services.audit import AuditRecord, Outcome, WriteAudit

__all__ = ["MAX_AUDITED_QUERY", "REQUEST_ID_STATE", "WRITE_STATE", "action_for", "request_event"]

#: :class:`~app.services.audit.WriteAudit` (set by :func:`write_audit`)
REQUEST_ID_STATE: Final = "audit_request_id"
WRITE_STATE: Final = "audit_write"


@functools.lru_cache(maxsize=1024)
def action_for(method: str, path: str) -> str:
    """The audited action of a route, from its method and path template (a bounded set: the
    routes', so the answers are kept).

    >>> action_for("GET", "/dicom-web/studies/{study}/series/{series}/metadata")
    'metadata'
    >>> action_for("GET", "/dicom-web/studies/{study}/frames/{frames}/rendered")
    'render'
    >>> action_for("GET", "/dicom-web/studies/{study}/series")
    'search'
    >>> action_for("HEAD", "/dicom-web/studies/{study}")
    'head'
    >>> action_for("DELETE", "/api/tokens/{jti}")
    'token-revoked'
    """
    method = method.upper()
    if path.startswith("/api/audit"):
        return "audit-query"
    if path == "/openapi.json":
        return "api-description"
    if path.startswith("/api/tokens"):
        return {"DELETE": "token-revoked", "POST": "token-issued"}.get(method, "token-query")
    if path == "/api/stats":
        return "stats-query"
    if path == "/metrics":
        return "metrics-query"
    if method == "HEAD":
        # headers only: what exists, its type, size and ETag (a search's count), no data read
        return "head"
    if path.startswith(("/api/aes", "/api/jobs")):
        return _admin_action(method, path)
    if method in ("POST", "PUT", "PATCH"):
        return "store"
    if method == "DELETE":
        return "delete"
    if method == "OPTIONS":
        return "capabilities"
    last = path.rstrip("/").rsplit("/", 1)[-1]
    if last in ("rendered", "thumbnail"):
        return "render"
    if "/frames/" in path:
        return "frames"
    if last == "metadata":
        return "metadata"
    if "/bulkdata" in path:
        return "bulkdata"
    if last in ("studies", "series", "instances"):
        return "search"
    return "retrieve"


#: the administration of remote AEs and jobs: what was changed, by method (and verb in the path)
_ADMIN_ACTIONS: Final = {"GET": "read", "POST": "add", "PUT": "update", "DELETE": "remove"}


def _admin_action(method: str, path: str) -> str:
    """``ae-add``, ``job-start``, ``job-cancel`` ...

    >>> _admin_action("PUT", "/api/aes/{ae_title}"), _admin_action("GET", "/api/jobs/{job_id}")
    ('ae-update', 'job-read')
    >>> _admin_action("POST", "/api/jobs/pull"), _admin_action("POST", "/api/jobs/{job_id}/cancel")
    ('job-start', 'job-cancel')
    """
    if path.startswith("/api/aes"):
        return f"ae-{_ADMIN_ACTIONS.get(method, 'read')}"
    if method != "POST":
        return "job-read"
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return f"job-{last}" if last in ("cancel", "resume") else "job-start"


def _outcome(status: int, denied: bool) -> str:
    if denied or status in (401, 403):
        return Outcome.DENIED
    return Outcome.SUCCESS if status < 400 else Outcome.FAILURE


def request_event(
    method: str,
    path: str,
    state: dict[str, Any] | None,
    params: dict[str, Any] | None,
    query_string: bytes,
    source: str | None,
    status: int,
    total: int | None,
    request_id: str,
    ended: float,
) -> AuditRecord:
    """The audit event of a finished request, from what :meth:`AuditMiddleware._record` kept
    (``path`` is the route's template)."""
    state = state or {}
    write: WriteAudit | None = state.get(WRITE_STATE)
    # first: should the rest fail, the journal rows are left for a sweep to chain on their own
    supersedes = write.release() if write is not None else ()
    principal: Principal | None = state.get("principal")
    denied: str | None = state.get("audit_denied")
    extra: dict[str, Any] = state.get("audit_extra") or {}
    params = params or {}
    raw = query_string.decode("latin-1")
    query = _query(raw) if "UID=" in raw else {}
    # a page names its own action (a study list searched with a POST is a search, not a store)
    action = extra.get("action") or action_for(method, path)
    if status == 401:
        action = "login-failure"
    study = extra.get("study_uid") or params.get("study") or query.get("studyUID")
    patient = extra.get("patient_id")
    detail = extra.get("detail") or denied or f"{method} {path}"
    if action == "search" or (action == "head" and action_for("GET", path) == "search"):
        # a HEAD on a search answers with the number of matches: who asked for whom is kept
        study, patient, detail = _searched(raw, query, study, patient, detail, denied is None)
    return AuditRecord(
        action=action,
        outcome=_outcome(status, denied is not None),
        status=status,
        actor=principal.subject if principal is not None else None,
        client_id=principal.client_id if principal is not None else None,
        source=source,
        study_uid=_uid(study),
        series_uid=_uid(params.get("series") or query.get("seriesUID")),
        instance_uid=_uid(params.get("instance") or query.get("objectUID")),
        patient_id=patient,
        count=extra.get("count", total),
        request_id=request_id,
        detail=detail,
        time=datetime.fromtimestamp(ended, UTC),
        supersedes=supersedes,
    )


#: the longest query string a search's audit detail keeps
MAX_AUDITED_QUERY: Final = 1024
#: QIDO keys naming one patient or one study, by keyword or tag
_PATIENT_KEYS: Final = ("PatientID", "00100020")
_STUDY_KEYS: Final = ("StudyInstanceUID", "0020000D")


def _searched(
    raw: str, query: dict[str, str], study: Any, patient: Any, detail: str, allowed: bool
) -> tuple[Any, Any, str]:
    """What a search looked for, as the audit records it (PS3.15 A.5.3.10 keeps the query).

    The query string joins the detail (bounded; percent-encoded as sent), and a search for one
    PatientID or one StudyInstanceUID names it, so "who looked for this patient?" finds searches
    too (a wildcard or a list names nobody). A refused search keeps its refusal as the detail.
    """
    if not raw:
        return study, patient, detail
    if allowed:
        detail = f"{detail}?{raw[:MAX_AUDITED_QUERY]}"
    fields = query or _query(raw)  # parsed already when it names a UID (:func:`request_event`)
    if patient is None:
        wanted = fields.get(_PATIENT_KEYS[0]) or fields.get(_PATIENT_KEYS[1])
        if wanted and _WILDCARD.search(wanted) is None:
            patient = wanted[:64]
    if study is None:
        wanted = fields.get(_STUDY_KEYS[0]) or fields.get(_STUDY_KEYS[1])
        if wanted and _LIST_OR_WILDCARD.search(wanted) is None:
            study = wanted
    return study, patient, detail


#: a value matching more than one thing: a wildcard (or an escape), or a list of UIDs
_WILDCARD: Final = re.compile(r"[*?\\]")
_LIST_OR_WILDCARD: Final = re.compile(r"[,*?\\]")


def _query(raw: str) -> dict[str, str]:
    """``dict(parse_qsl(raw))``, without its decoding work when there is nothing to decode.

    >>> _query("PatientID=P1&limit=&x&StudyInstanceUID=1.2") == dict(parse_qsl(
    ...     "PatientID=P1&limit=&x&StudyInstanceUID=1.2"))
    True
    >>> _query("PatientName=A%5EB+C")
    {'PatientName': 'A^B C'}
    """
    if "%" in raw or "+" in raw:
        return dict(parse_qsl(raw))
    out = {}
    for pair in raw.split("&"):
        name, equals, value = pair.partition("=")
        if equals and value:  # as parse_qsl: no "=", or a blank value, is left out
            out[name] = value
    return out


def _uid(value: Any) -> str | None:
    """A path or query value for a UID column, bounded to the column width."""
    if not isinstance(value, str) or not value:
        return None
    return value[:64]
