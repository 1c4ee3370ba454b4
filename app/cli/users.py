"""``lightbox user``: embedded users (add, passwd, disable, enable, role, list).

There is no default password: each is typed twice at a terminal (never echoed) or read from the
first line of standard input with ``--password-stdin`` (scripts, secrets managers), never from
the command line, where other users of the machine could read it.
"""

import asyncio
import getpass
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from app.cli.root import os_actor, user_cli
from app.config import Settings

T = TypeVar("T")

_ROLES = "reader (read), uploader (+ write), editor (+ delete), admin (everything)"


def _run(action: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``action(services)``; a refusal is one line on standard error and exit status 1."""
    from app.errors import LightboxError
    from app.services.container import open_services

    async def run() -> T:
        async with open_services(Settings()) as services:
            return await action(services)

    try:
        return asyncio.run(run())
    except LightboxError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        raise typer.Exit(1) from None


def _password(stdin: bool) -> str:
    if stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        return password[:-1] if password.endswith("\r") else password
    if not sys.stdin.isatty():
        print(
            "error: no terminal to read the password from: pipe it with --password-stdin",
            file=sys.stderr,
        )
        raise typer.Exit(2)
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != first:
        print("error: the two passwords differ", file=sys.stderr)
        raise typer.Exit(1)
    return first


PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="read the password from the first line of standard input"
    ),
]


def first_admin_steps(settings: Settings, site: str) -> str | None:
    """What to do on a first start: the steps to create the first administrator, when no
    enabled administrator exists (``None`` when one does). Reads the index only (no services:
    ``lightbox serve`` runs it before its workers start)."""
    from app.auth.roles import Role
    from app.index.db import Database, DriverError
    from app.index.users import count_users

    async def admins() -> int:
        db = Database(settings.resolved_database_url(), pool_size=1)
        try:
            async with db.read() as conn:
                return await count_users(conn, enabled_only=True, role=Role.ADMIN.value)
        finally:
            await db.close()

    try:
        if asyncio.run(admins()):
            return None
    except DriverError:
        return "Lightbox: the index has no users table yet: run `lightbox db upgrade` first."
    command = sys.argv[0] if os.path.basename(sys.argv[0]) == "lightbox" else "lightbox"
    return (
        "Lightbox: no administrator can sign in yet. Create the first one (there is no default "
        "password):\n"
        f"    {command} user add admin --role admin\n"
        "  (with the same LIGHTBOX_* settings as the server; it asks for the password twice),\n"
        f"  then open {site}/ and sign in."
    )


@user_cli.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="user name (letters, digits, . _ @ + -)")],
    role: Annotated[str, typer.Option(help=f"what the user may do: {_ROLES}")] = "reader",
    password_stdin: PasswordStdin = False,
) -> None:
    """Add a user who signs in with a password (at least 12 characters)."""
    password = _password(password_stdin)
    user = _run(lambda services: services.users.add(name, password, role, by=os_actor()))
    print(f"added {user.username} ({user.role.value}: {user.role.description})")


@user_cli.command("passwd")
def user_passwd(
    name: Annotated[str, typer.Argument(help="user name")],
    password_stdin: PasswordStdin = False,
) -> None:
    """Set a user's password."""
    password = _password(password_stdin)
    _run(lambda services: services.users.set_password(name, password, by=os_actor()))
    print(f"password of {name.strip().lower()} changed")


@user_cli.command("disable")
def user_disable(name: Annotated[str, typer.Argument(help="user name")]) -> None:
    """Stop a user from signing in (their open sessions end within a few minutes)."""
    _run(lambda services: services.users.set_enabled(name, False, by=os_actor()))
    print(f"{name.strip().lower()} disabled")


@user_cli.command("enable")
def user_enable(name: Annotated[str, typer.Argument(help="user name")]) -> None:
    """Let a disabled user sign in again (also lifts a lockout after failed sign-ins)."""
    _run(lambda services: services.users.set_enabled(name, True, by=os_actor()))
    print(f"{name.strip().lower()} enabled")


@user_cli.command("role")
def user_role(
    name: Annotated[str, typer.Argument(help="user name")],
    role: Annotated[str, typer.Argument(help=_ROLES)],
) -> None:
    """Change a user's role (their sessions take it within a few minutes)."""
    _run(lambda services: services.users.set_role(name, role, by=os_actor()))
    print(f"{name.strip().lower()} is now {role}")


@user_cli.command("list")
def user_list(
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")] = False,
) -> None:
    """List the users (never their password hashes)."""
    users = _run(lambda services: services.users.list())
    if as_json:
        for user in users:
            print(
                json.dumps(
                    {
                        "username": user.username,
                        "role": user.role.value,
                        "permissions": sorted(p.value for p in user.permissions),
                        "disabled": user.disabled,
                        "created_at": user.created_at.isoformat(),
                        "password_changed_at": user.password_changed_at.isoformat(),
                        "last_login_at": user.last_login_at.isoformat()
                        if user.last_login_at
                        else None,
                    }
                )
            )
        return
    if not users:
        print("no users (add one: lightbox user add NAME --role admin)")
        return
    width = max(len(u.username) for u in users)
    print(f"{'USER':<{width}}  {'ROLE':<8}  {'STATE':<8}  LAST SIGN-IN")
    for user in users:
        state = "disabled" if user.disabled else "enabled"
        last = user.last_login_at.strftime("%Y-%m-%d %H:%M UTC") if user.last_login_at else "never"
        print(f"{user.username:<{width}}  {user.role.value:<8}  {state:<8}  {last}")
