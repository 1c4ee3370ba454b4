"""The ``lightbox`` Typer application and its command groups; each command lives in the module
named for its concept (``app.cli.serve``, ``app.cli.db`` ...), registered by ``app.cli``."""

import typer

cli = typer.Typer(no_args_is_help=True, add_completion=False, help="Lightbox, a DICOMweb PACS.")
db_cli = typer.Typer(no_args_is_help=True, help="Index database schema.")
cli.add_typer(db_cli, name="db")
token_cli = typer.Typer(no_args_is_help=True, help="Bearer tokens signed by the embedded key.")
cli.add_typer(token_cli, name="token")
audit_cli = typer.Typer(no_args_is_help=True, help="The audit trail.")
cli.add_typer(audit_cli, name="audit")
