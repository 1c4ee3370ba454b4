"""``lightbox healthcheck`` (the image's HEALTHCHECK): the port and scheme come from the
settings, as the server reads them; a server that is down or not ready is exit status 1."""

import subprocess
import sys
from pathlib import Path

from tests.auth.test_serve_cli import _self_signed
from tests.e2e.server import running_server, server_env
from tests.ports import free_port


def _check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "healthcheck", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_healthcheck_follows_the_settings(fresh_database_url: str, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    port = free_port()
    env = server_env(
        tmp_path / "data",
        fresh_database_url,
        LIGHTBOX_PORT=str(port),
        LIGHTBOX_SSL_CERTFILE=str(cert),
        LIGHTBOX_SSL_KEYFILE=str(key),
    )
    # the server takes its TLS files and port from the settings too (no serve options)
    with running_server(env, port=port, tls_ca=cert) as server:
        assert server.url.startswith("https://")
        healthy = _check({**env, "LIGHTBOX_HOST": "0.0.0.0"})
        assert healthy.returncode == 0, healthy.stderr
        assert f"healthy: https://127.0.0.1:{port}/healthz" in healthy.stdout
        ready = _check(env, "--ready")
        assert ready.returncode == 0, ready.stderr
        assert "/readyz" in ready.stdout
        # the settings say plain http: the check fails, as the image's would
        plain = _check({k: v for k, v in env.items() if not k.startswith("LIGHTBOX_SSL")})
        assert plain.returncode == 1
        assert f"unhealthy: http://127.0.0.1:{port}/healthz" in plain.stderr
    down = _check(env)
    assert down.returncode == 1
    assert "unhealthy" in down.stderr
