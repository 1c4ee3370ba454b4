"""The ``lightbox`` Typer application and its command groups; each command lives in the module
named for its concept (``app.cli.serve``, ``app.cli.db`` ...), registered by ``app.cli``."""

import os

import typer

cli = typer.Typer(no_args_is_help=True, add_completion=False, help="Lightbox, a DICOMweb PACS.")
db_cli = typer.Typer(no_args_is_help=True, help="Index database schema.")
cli.add_typer(db_cli, name="db")
token_cli = typer.Typer(no_args_is_help=True, help="Bearer tokens signed by the embedded key.")
cli.add_typer(token_cli, name="token")
audit_cli = typer.Typer(no_args_is_help=True, help="The audit trail.")
cli.add_typer(audit_cli, name="audit")
user_cli = typer.Typer(
    no_args_is_help=True,
    help="Embedded users: who may sign in to the web pages with a password, and their role.",
)
cli.add_typer(user_cli, name="user")
ae_cli = typer.Typer(no_args_is_help=True, help="Remote DICOM AEs (C-MOVE destinations, sources).")
cli.add_typer(ae_cli, name="ae")


def os_actor() -> str:
    """The audit actor of a command run on this machine: ``cli:<operating-system user>``."""
    import getpass

    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (a bare container)
        user = str(os.getuid())
    return f"cli:{user}"
