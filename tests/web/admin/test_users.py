"""``/admin/users``: the embedded users listed, a role changed, a user disabled, through the
user service (web-auth's, ``services.users``); a server without it says so."""

from pathlib import Path

from tests.auth.helpers import auth_settings
from tests.web.archive import text_of
from tests.web.helpers import ALL, csrf_header, signed_in, web_client


async def test_users_and_roles(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        session = await signed_in(http, services, subject="root", permissions=ALL)
        csrf = csrf_header(services, session)["X-CSRF-Token"]
        directory = getattr(services, "users", None)
        if directory is None:  # before the user directory of issue 22 point 1
            page = await http.get("/admin/users")
            assert "no embedded user directory" in text_of(page.text)
            refused = await http.post(
                "/admin/users/bob", data={"csrf_token": csrf, "role": "admin"}
            )
            assert refused.status_code == 404
            return
        await directory.add("bob", "a long enough passphrase 1", "reader", by="root")
        page = await http.get("/admin/users")
        assert "bob" in text_of(page.text)
        changed = await http.post("/admin/users/bob", data={"csrf_token": csrf, "role": "editor"})
        assert changed.status_code == 303
        assert (await directory.get("bob")).role == "editor"
        disabled = await http.post(
            "/admin/users/bob", data={"csrf_token": csrf, "enabled": "false"}
        )
        assert disabled.status_code == 303
        assert (await directory.get("bob")).disabled
        assert "disabled" in text_of((await http.get("/admin/users")).text)
