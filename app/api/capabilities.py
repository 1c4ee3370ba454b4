"""The capabilities resource, ``OPTIONS {root}/`` (RES-11, CAP-01, PS3.18 §8.9), and the
conformance statement (CAP-03), both generated from one source of truth.

What the service offers is read from the app itself: every route under the DICOMweb root with its
methods, summary, parameters and the media types of its requests and responses (the OpenAPI
description FastAPI builds from the route declarations, so a route that exists is described and
one that does not is not). What routes cannot say comes from the code that implements it: the
transfer syntaxes ingest reads (:data:`app.dicom.uids.KNOWN_TRANSFER_SYNTAXES`), the character
sets values are decoded from (pydicom's table of Specific Character Set terms), the QIDO match
keys and parameters (:mod:`app.dicom.query`), the STOW failure codes (the
:class:`~app.errors.InstanceRejected` tree), and the configured policies (Settings).

Representations: WADL (``application/vnd.sun.wadl+xml``, the default) or JSON
(``application/json``), chosen by ``Accept`` (406 for anything else). A CORS preflight to the root
is not a capabilities request (GEN-09): it gets 204 with ``Allow`` only, and CORS handling around
the app adds its headers.

``lightbox conformance`` writes ``docs/conformance.md`` from the same description; a test fails
when the committed file drifts.
"""

import xml.etree.ElementTree as ET
from typing import Any, Final

import orjson
from fastapi import APIRouter, FastAPI, Request
from pydicom.charset import python_encoding
from starlette.responses import Response

from app import __version__
from app.api.deps import SettingsDep
from app.api.methods import allowed_methods, is_preflight
from app.api.negotiation import parse_accept
from app.api.stow import MAX_REASON_WARNINGS
from app.api.urls import service_base
from app.config import Settings
from app.dicom.query import KEYS, WILDCARD_VRS, Resource
from app.dicom.status import Status
from app.dicom.uids import (
    DEFLATED,
    ENCAPSULATED,
    EXPLICIT_VR_LITTLE_ENDIAN,
    KNOWN_TRANSFER_SYNTAXES,
    NATIVE,
    REFERENCED,
)
from app.errors import InstanceRejected, NotAcceptable

__all__ = [
    "JSON",
    "WADL",
    "capabilities",
    "conformance_markdown",
    "router",
    "wadl_document",
]

router = APIRouter(tags=["capabilities"])

WADL: Final = "application/vnd.sun.wadl+xml"
JSON: Final = "application/json"
_WADL_NS: Final = "http://wadl.dev.java.net/2009/02"
_METHOD_ORDER: Final = ("get", "post", "put", "delete", "options")

#: QIDO-RS parameters that are not match keys (PS3.18 §8.3.4), and what they do here
QIDO_PARAMETERS: Final = {
    "includefield": "attributes to return besides the defaults (tag or keyword, or 'all')",
    "limit": "page size; defaults to, and is capped at, the maximum number of matches",
    "offset": "number of matches to skip",
    "fuzzymatching": "'true' matches person names fuzzily (see Matching)",
}
#: QIDO-RS matching behaviour (PS3.4 §C.2.2.2), per value representation
MATCHING: Final = {
    "single value": "exact, case-sensitive (PN: case- and accent-insensitive)",
    "wildcard": "'*' and '?' in values of VR " + ", ".join(sorted(WILDCARD_VRS)),
    "UID list": "backslash- or comma-separated UIDs",
    "range": "DA and TM ranges 'from-to', open at either end; a date key and its time key "
    "given together are one date-time range",
    "sequence": "dotted paths RequestAttributesSequence.ScheduledProcedureStepID and "
    ".RequestedProcedureID (keywords or tags)",
    "multi-valued": "ModalitiesInStudy and sequence-path keys match when any value matches",
    "fuzzy": "fuzzymatching=true: person names accent- and case-insensitive, each query word "
    "a prefix of some name component, in any order",
}
#: STOW-RS warning codes (0008,1196) and when they are given
WARNING_CODES: Final = {
    Status.COERCION_OF_DATA_ELEMENTS: "an instance replaced a stored one (duplicate policy "
    "'overwrite'), or a study was accepted under a second PatientID (patient conflict 'accept')",
}


#: the QIDO-RS resources by their path under the root (RES-02)
_QIDO_RESOURCES: Final = {
    "/studies": Resource.STUDIES,
    "/studies/{study}/series": Resource.STUDY_SERIES,
    "/series": Resource.SERIES,
    "/studies/{study}/instances": Resource.STUDY_INSTANCES,
    "/studies/{study}/series/{series}/instances": Resource.SERIES_INSTANCES,
    "/instances": Resource.INSTANCES,
}


def _match_keys(resource: Resource) -> list[str]:
    """The indexed match keys a search on ``resource`` accepts (QIDO-03)."""
    return sorted(name for name, key in KEYS.items() if key.level in resource.match_levels)


def _media(entry: dict[str, Any] | None) -> list[str]:
    return sorted((entry or {}).get("content", {}))


def _resources(app: FastAPI, root: str) -> list[dict[str, Any]]:
    """Every route under the DICOMweb root: methods, parameters, request and response types."""
    paths: dict[str, Any] = app.openapi()["paths"]
    resources = []
    for path in sorted(paths):
        if not (path == root or path.startswith(root + "/")):
            continue
        relative = path[len(root) :] or "/"
        methods = []
        for name in _METHOD_ORDER:
            op = paths[path].get(name)
            if op is None:
                continue
            params = [
                {"name": p["name"], "in": p["in"], "required": bool(p.get("required"))}
                for p in op.get("parameters", [])
            ]
            if "qido" in op.get("tags", []) and name == "get":
                params += [
                    {"name": key, "in": "query", "required": False} for key in QIDO_PARAMETERS
                ]
                params += [
                    {"name": key, "in": "query", "required": False}
                    for key in _match_keys(_QIDO_RESOURCES.get(relative, Resource.STUDIES))
                ]
            # 422 is FastAPI's own validation answer, which Lightbox turns into 400 (GEN-03)
            responses = {
                status: _media(body)
                for status, body in sorted(op.get("responses", {}).items())
                if status != "422"
            }
            methods.append(
                {
                    "method": name.upper(),
                    "id": op.get("operationId"),
                    "summary": op.get("summary", ""),
                    "parameters": params,
                    "request": _media(op.get("requestBody")),
                    "responses": responses,
                }
            )
        resources.append({"path": relative, "methods": methods})
    return resources


def _failure_codes() -> list[dict[str, str]]:
    seen: dict[int, list[str]] = {}
    pending: list[type[InstanceRejected]] = [InstanceRejected]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls is InstanceRejected:
            continue
        doc = (cls.__doc__ or cls.__name__).strip().splitlines()[0].rstrip(".")
        seen.setdefault(int(cls.dimse_status), []).append(doc)
    return [
        {"code": f"{code:04X}", "name": Status(code).name, "meaning": "; ".join(sorted(docs))}
        for code, docs in sorted(seen.items())
    ]


def capabilities(app: FastAPI, settings: Settings, base: str | None = None) -> dict[str, Any]:
    """The machine-readable description of what this server supports (CAP-01)."""
    root = settings.dicomweb_root
    return {
        "service": {
            "name": "Lightbox",
            "version": __version__,
            "standard": "DICOM PS3.18 (DICOMweb): Studies Service",
            "base": base or root or "/",
        },
        "resources": _resources(app, root),
        "transferSyntaxes": {
            "store": sorted(KNOWN_TRANSFER_SYNTAXES),
            "storeGroups": {
                "native": sorted(NATIVE),
                "deflated": sorted(DEFLATED),
                "referenced": sorted(REFERENCED),
                "encapsulated": sorted(ENCAPSULATED),
            },
            "retrieve": {
                "asStored": "transfer-syntax=* (or the stored UID) sends the stored bytes",
                "default": EXPLICIT_VR_LITTLE_ENDIAN,
                "transcoding": False,
            },
        },
        "characterSets": sorted(k for k in python_encoding if k),
        "query": {
            "levels": ["study", "series", "instance"],
            "parameters": QIDO_PARAMETERS,
            "matchingKeys": {path: _match_keys(r) for path, r in _QIDO_RESOURCES.items()},
            "matching": MATCHING,
            "fuzzyMatching": True,
            "maxResults": settings.qido_max_results,
            "maxInstanceResults": settings.qido_max_instance_results,
        },
        "store": {
            "duplicatePolicy": settings.duplicate_policy.value,
            "patientConflict": settings.patient_conflict.value,
            "singlePartRequests": settings.allow_single_part_stow,
            "sopClassAllowList": list(settings.sop_class_allow_list) or "all",
            "maxRequestBytes": settings.limits.max_request_bytes,
            "maxInstanceBytes": settings.limits.max_instance_bytes,
            "failureCodes": _failure_codes(),
            "warningCodes": [
                {"code": f"{int(code):04X}", "name": code.name, "meaning": meaning}
                for code, meaning in WARNING_CODES.items()
            ],
            # the reasons in words (app.api.stow.reason_warnings)
            "reasonText": {
                "header": "Warning",
                "form": '299 lightbox "<SOP Instance UID, or part N>: failure|warning 0xXXXX '
                '<reason>"',
                "maxFields": MAX_REASON_WARNINGS,
            },
        },
        "extensions": {
            "delete": {
                "enabled": settings.allow_delete,
                "levels": ["study", "series", "instance"],
                "tombstoneHours": settings.tombstone_hours,
            },
        },
    }


def wadl_document(caps: dict[str, Any]) -> bytes:
    """The description as WADL (the W3C member submission of 2009, namespace ``2009/02``)."""
    ET.register_namespace("", _WADL_NS)

    def el(parent: ET.Element, tag: str, **attrs: str) -> ET.Element:
        return ET.SubElement(parent, f"{{{_WADL_NS}}}{tag}", attrs)

    app_el = ET.Element(f"{{{_WADL_NS}}}application")
    doc = el(app_el, "doc", title=caps["service"]["name"])
    doc.text = f"{caps['service']['standard']}, version {caps['service']['version']}"
    resources = el(app_el, "resources", base=caps["service"]["base"].rstrip("/") + "/")
    for resource in caps["resources"]:
        path = resource["path"].lstrip("/")
        res_el = el(resources, "resource", path=path)
        templated: set[str] = set()
        for method in resource["methods"]:
            for p in method["parameters"]:
                if p["in"] == "path" and p["name"] not in templated:
                    templated.add(p["name"])
                    el(res_el, "param", name=p["name"], style="template", required="true")
        for method in resource["methods"]:
            m_el = el(res_el, "method", name=method["method"], id=method["id"] or "")
            el(m_el, "doc").text = method["summary"]
            request = el(m_el, "request")
            for p in method["parameters"]:
                if p["in"] in ("query", "header"):
                    el(request, "param", name=p["name"], style=p["in"])
            for media in method["request"]:
                el(request, "representation", mediaType=media)
            for status, media_types in method["responses"].items():
                response = el(m_el, "response", status=status)
                for media in media_types:
                    el(response, "representation", mediaType=media)
    ET.indent(app_el)
    document: bytes = ET.tostring(app_el, encoding="utf-8", xml_declaration=True)
    return document


def _choose(accept: str | None) -> str:
    """WADL unless the client prefers JSON (PS3.18 §8.9.4); 406 when it accepts neither.

    Each type is weighed by the most specific range that covers it (RFC 9110 §12.5.1); on a tie
    WADL wins.
    """
    if accept is None or not accept.strip():
        return WADL
    ranges = parse_accept(accept)
    scored = []
    for rank, (media, names) in enumerate(
        ((WADL, {WADL}), (JSON, {JSON, "application/dicom+json"}))
    ):
        q, specificity = 0.0, -1
        for r in ranges:
            level = (
                2
                if r.essence in names
                else 1
                if r.essence == "application/*"
                else 0
                if r.essence == "*/*"
                else -1
            )
            if level > specificity:
                q, specificity = r.q, level
        if q > 0:
            scored.append((q, specificity, -rank, media))
    if not scored:
        raise NotAcceptable(f"the capabilities are available as {WADL} or {JSON}")
    return max(scored)[3]


@router.options(
    "/",
    operation_id="capabilities-describe",
    summary="What this server supports (PS3.18 §8.9, CAP-01)",
    responses={
        200: {
            "description": "the capabilities: WADL (default) or JSON, as Accept asks",
            "content": {WADL: {}, JSON: {}},
        },
        204: {"description": "a CORS preflight: Allow only (CORS handling adds its headers)"},
        406: {"description": "neither WADL nor JSON is acceptable"},
    },
    response_class=Response,
)
async def describe(request: Request, settings: SettingsDep) -> Response:
    allow = ", ".join(allowed_methods(request.app, request.url.path)) or "OPTIONS"
    if is_preflight(request.scope["headers"]):
        return Response(status_code=204, headers={"Allow": allow})
    media = _choose(request.headers.get("accept"))
    caps = capabilities(request.app, settings, service_base(request, settings))
    body = wadl_document(caps) if media == WADL else orjson.dumps(caps, option=orjson.OPT_INDENT_2)
    return Response(body, media_type=media, headers={"Allow": allow})


def conformance_markdown(app: FastAPI, settings: Settings) -> str:
    """``docs/conformance.md``: a PS3.2-style conformance statement (CAP-03)."""
    caps = capabilities(app, settings)
    q, store, ext = caps["query"], caps["store"], caps["extensions"]
    ts = caps["transferSyntaxes"]
    lines = [
        "# Lightbox DICOMweb conformance statement",
        "",
        "<!-- generated by `lightbox conformance` from the running code (routes, ingest, query",
        "     and settings defaults); a test fails when this file drifts. Do not edit by hand. -->",
        "",
        f"Lightbox {caps['service']['version']}: {caps['service']['standard']}, "
        f"service root `{settings.dicomweb_root or '/'}`.",
        "The same description is served, machine-readable, by `OPTIONS {root}/` "
        f"(`{WADL}` by default, `{JSON}` on request).",
        "",
        "## 1. Resources and methods",
        "",
        "| resource | method | summary | request media types | response media types |",
        "| --- | --- | --- | --- | --- |",
    ]
    for resource in caps["resources"]:
        for m in resource["methods"]:
            responses = sorted(
                {t for status, types in m["responses"].items() if status < "300" for t in types}
            )
            lines.append(
                f"| `{resource['path']}` | {m['method']} | {m['summary']} | "
                f"{', '.join(f'`{t}`' for t in m['request']) or '-'} | "
                f"{', '.join(f'`{t}`' for t in responses) or '-'} |"
            )
    lines += [
        "",
        "HTTP statuses per resource are listed in `openapi/openapi.json`. A wrong method on a "
        "known path answers 405 with `Allow`; `OPTIONS` on any known path answers 204 with "
        "`Allow`. `HEAD` is answered wherever `GET` is, with the GET's status and headers and "
        "no body. Paths are relative to the service root; WADO-URI is also served at the "
        "server's root (`/wado`), the address legacy integrations call.",
        "",
        "## 2. Search (QIDO-RS, PS3.18 §10.6.5)",
        "",
        f"- Levels: {', '.join(q['levels'])}.",
        f"- Maximum number of matches per response: **{q['maxResults']}** studies or series, "
        f"**{q['maxInstanceResults']}** instances (`limit` larger than this is capped; a "
        "`Warning` tells how many further matches exist).",
        f"- Fuzzy matching of person names: **{'supported' if q['fuzzyMatching'] else 'no'}**.",
        "- Matching keys per resource (QIDO-03; a known attribute outside these is ignored "
        "and named in a `Warning`):",
    ]
    lines += [
        f"  - `{path}`: " + ", ".join(f"`{k}`" for k in keys) + "."
        for path, keys in q["matchingKeys"].items()
    ]
    lines += [
        "- Parameters:",
    ]
    lines += [f"  - `{name}`: {text}" for name, text in q["parameters"].items()]
    lines.append("- Matching:")
    lines += [f"  - {name}: {text}" for name, text in q["matching"].items()]
    lines += [
        "",
        "## 3. Store (STOW-RS, PS3.18 §10.5.5)",
        "",
        f"- Duplicate SOP Instance UID policy: `{store['duplicatePolicy']}`; study under another "
        f"PatientID: `{store['patientConflict']}`.",
        f"- Single-part `application/dicom` requests: "
        f"{'accepted' if store['singlePartRequests'] else 'refused'}.",
        f"- SOP classes accepted: {store['sopClassAllowList']}.",
        f"- Largest request: {store['maxRequestBytes']} bytes; largest instance: "
        f"{store['maxInstanceBytes']} bytes.",
        "- Failure reasons (0008,1197):",
    ]
    lines += [f"  - `{c['code']}` {c['name']}: {c['meaning']}" for c in store["failureCodes"]]
    lines.append("- Warning reasons (0008,1196):")
    lines += [f"  - `{c['code']}` {c['name']}: {c['meaning']}" for c in store["warningCodes"]]
    reason = store["reasonText"]
    lines += [
        "- Reasons in words: the Store Instances Response Module (Table 10.5.3-1) carries the "
        "codes above and no text (a comment attribute such as ErrorComment (0000,0902) is a "
        "DIMSE command element, not part of it), so each failed instance, and each stored with "
        "a warning, also gets a `Warning` header field (PS3.18 §10.5.3; RFC 7234 §5.5 form): "
        f'`{reason["form"]}`, e.g. `299 lightbox "1.2.3.4: failure 0xC000 not a DICOM PS3.10 '
        'file (no File Meta Information)"`; a part that names no instance is `part N` (its '
        f"position in the request). At most {reason['maxFields']} fields, then one counting "
        "the rest; every reason is also in the server log.",
    ]
    lines += [
        "",
        "## 4. Transfer syntaxes (PS3.18 §10.4.5)",
        "",
        "Stored as received, in any of these transfer syntaxes:",
        "",
    ]
    lines += [f"- `{uid}`" for uid in ts["store"]]
    lines += [
        "",
        f"Retrieve: {ts['retrieve']['asStored']}; without a transfer-syntax parameter, "
        f"instances stored in `{ts['retrieve']['default']}` are sent; transcoding: "
        + (
            "yes."
            if ts["retrieve"]["transcoding"]
            else "not supported (406, or 206 with a Warning)."
        ),
        "",
        "## 5. Rendered resources and thumbnails",
        "",
    ]
    rendered = [
        f"`{r['path']}`"
        for r in caps["resources"]
        if r["path"].endswith(("/rendered", "/thumbnail"))
    ]
    if rendered:
        lines.append("Offered at " + ", ".join(rendered) + ".")
        lines += [
            "",
            f"Output size: a `viewport` (or WADO-URI `rows` x `columns`) of more than "
            f"{settings.render.max_output_pixels} pixels is refused (400), and no image is "
            "enlarged beyond that; an animated GIF holds the frames that fit in "
            f"{settings.render.max_animation_pixels} pixels.",
        ]
    else:
        lines.append(
            "Not offered by this build (no `/rendered` or `/thumbnail` resource), so no "
            "thumbnail method, sizes or `quality` semantics apply."
        )
    lines += [
        "",
        "## 6. Character sets",
        "",
        "Values are decoded from any of these Specific Character Set (0008,0005) terms and "
        "served as UTF-8: " + ", ".join(f"`{c}`" for c in caps["characterSets"]) + ".",
        "",
        "## 7. Extensions",
        "",
        f"- DELETE of studies, series and instances: "
        f"{'enabled' if ext['delete']['enabled'] else 'disabled (405)'}; a deleted resource "
        f"answers 410 Gone for {ext['delete']['tombstoneHours']:g} hours, then 404.",
        "",
    ]
    return "\n".join(lines)
