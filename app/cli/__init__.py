"""The ``lightbox`` command: serve, dimse, db, token, user, audit, viewer, ae, pull, fsck, gc,
import, export, stats, retention, openapi, conformance.

Heavy modules (the services, the migrations) are imported inside the commands that use them, so
the ``serve`` supervisor process of a multi-worker server stays small. Each command group is a
module of this package; importing it registers its commands on ``cli``.
"""

from app.cli import (
    ae,
    audit,
    db,
    dimse,
    documents,
    export,
    health,
    imports,
    maintenance,
    pull,
    retention,
    serve,
    stats,
    tokens,
    users,
    viewer,
)
from app.cli.documents import conformance_text, openapi_text
from app.cli.root import cli
from app.cli.tokens import parse_ttl

__all__ = [
    "ae",
    "audit",
    "cli",
    "conformance_text",
    "db",
    "dimse",
    "documents",
    "export",
    "health",
    "imports",
    "main",
    "maintenance",
    "openapi_text",
    "parse_ttl",
    "pull",
    "retention",
    "serve",
    "stats",
    "tokens",
    "users",
    "viewer",
]


def main() -> None:
    cli()
