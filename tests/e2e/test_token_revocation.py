"""A token revoked by the CLI (another process) is refused by every worker of a running
server within the refresh interval: the deny list lives in the index."""

import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.e2e.server import running_server, server_env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "token", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_revoked_on_every_worker(fresh_database_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = server_env(data_dir, fresh_database_url, LIGHTBOX_AUTH__REVOCATION_REFRESH_SECONDS="1")
    env.pop("LIGHTBOX_AUTH__ENABLED")
    with running_server(env, args=["--workers", "2"]) as server:
        token = _cli(env, "create", "--subject", "alice", "--ttl", "10m").stdout.split()[-1]
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(6):  # new connections: both workers verify (and cache) the token
            with httpx.Client() as client:
                assert client.get(f"{server.dicomweb}/studies", headers=headers).status_code == 204
        listed = _cli(env, "list", "--json").stdout
        jti = listed.split('"jti": "')[1].split('"')[0]
        _cli(env, "revoke", jti, "--reason", "test")
        revoked_at = time.monotonic()
        time.sleep(1.2)
        statuses = []
        for _ in range(6):
            with httpx.Client() as client:
                answer = client.get(f"{server.dicomweb}/studies", headers=headers)
            statuses.append(answer.status_code)
            assert "the token was revoked at" in answer.headers.get("www-authenticate", "")
        assert statuses == [401] * 6
        assert time.monotonic() - revoked_at < 10
