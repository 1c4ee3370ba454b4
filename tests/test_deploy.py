"""The production deployment files: compose.yaml validates with ``docker compose config`` (no
engine needed) and wires what it promises, its Lightbox settings parse and map Keycloak's roles,
the HAProxy configuration passes ``haproxy -c``, the Dockerfile and .dockerignore keep their
rules (non-root, health check from the settings, no patient data in the build context)."""

import json
import os
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.auth.factory import build_mapping
from app.auth.principal import Permission
from app.config import Settings

ROOT = Path(__file__).resolve().parents[1]
ENV_EXAMPLE = ROOT / ".env.example"


@cache
def compose_command() -> tuple[str, ...]:
    """``docker compose`` (the CLI plugin), else Debian's ``docker-compose`` (.ci/run installs
    it); never skipped: a machine with neither fails here and says what to install."""
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=60)
        if probe.returncode == 0:
            return (docker, "compose")
    legacy = shutil.which("docker-compose")
    if legacy is not None:
        return (legacy,)
    pytest.fail("neither `docker compose` nor `docker-compose` is installed (.ci/run installs it)")


def compose_config(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("LIGHTBOX_", "COMPOSE_"))
    }
    return subprocess.run(
        [
            *compose_command(),
            "--project-directory",
            str(ROOT),
            "-f",
            str(ROOT / "compose.yaml"),
            "--env-file",
            str(env_file),
            *args,
            "config",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
    )


def config(env_file: Path = ENV_EXAMPLE, *args: str) -> dict[str, Any]:
    done = compose_config(env_file, *args)
    assert done.returncode == 0, done.stderr
    parsed: dict[str, Any] = yaml.safe_load(done.stdout)
    return parsed


def keycloak_env(tmp_path: Path) -> Path:
    """.env.example with its keycloak block switched on, as the operator would."""
    lines = []
    in_block = False
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.startswith("# --- the keycloak profile"):
            in_block = True
        elif in_block and line.startswith("# ") and "=" in line.split()[1]:
            line = line[2:]
        lines.append(line)
    path = tmp_path / ".env"
    path.write_text("\n".join(lines) + "\n")
    return path


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # docker-compose 1.x may print KEY=VALUE items
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def test_compose_validates_and_wires_the_services() -> None:
    cfg = config()
    services = cfg["services"]
    # docker-compose 1.x prints the services of every profile, the plugin those started only
    default = {name for name, service in services.items() if not service.get("profiles")}
    assert default == {"db", "minio", "bucket", "migrate", "lightbox", "haproxy"}
    # the schema first (lightbox db upgrade, once), then the servers
    assert services["migrate"]["command"] == ["lightbox", "db", "upgrade"]
    assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    lightbox = services["lightbox"]
    assert lightbox["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert lightbox["depends_on"]["bucket"]["condition"] == "service_completed_successfully"
    # health checks everywhere; Lightbox's reads its settings (no port or scheme here)
    for name in ("db", "minio", "lightbox"):
        assert services[name]["healthcheck"]["test"], name
    check = " ".join(lightbox["healthcheck"]["test"])
    assert check.startswith("CMD lightbox healthcheck")
    assert "8080" not in check
    assert "http" not in check
    # the signing key lives in data_dir (/data), on a named volume shared by the replicas
    env = _environment(lightbox)
    mounts = [
        v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in lightbox["volumes"]
    ]
    assert any(
        m.startswith("lightbox-data:") and m.split(":")[1] == env["LIGHTBOX_DATA_DIR"]
        for m in mounts
    )
    assert "lightbox-data" in cfg["volumes"]
    # HAProxy in front, at the address Lightbox trusts for X-Forwarded-For
    haproxy = services["haproxy"]
    address = haproxy["networks"]["lightbox"]["ipv4_address"]
    assert json.loads(env["LIGHTBOX_TRUSTED_PROXIES"]) == [address]
    assert "ports" not in lightbox  # replicas are reached through HAProxy only
    assert "lightbox:8080" in (ROOT / "deploy/haproxy/haproxy.cfg").read_text()
    # DIMSE too: every replica listens beyond loopback, HAProxy publishes the port
    assert env["LIGHTBOX_DIMSE__HOST"] == "0.0.0.0"
    published = {
        p if isinstance(p, str) else f"{p['published']}:{p['target']}" for p in haproxy["ports"]
    }
    assert any(p.endswith(":11112") for p in published), published
    assert "lightbox:11112" in (ROOT / "deploy/haproxy/haproxy.cfg").read_text()
    # the migrate job and the servers share one configuration
    migrate_env = _environment(services["migrate"])
    for key in ("LIGHTBOX_DATABASE_URL", "LIGHTBOX_STORAGE_URL", "LIGHTBOX_S3__ENDPOINT"):
        assert migrate_env[key] == env[key], key


def test_compose_settings_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    env = _environment(config()["services"]["lightbox"])
    for name in [k for k in os.environ if k.startswith("LIGHTBOX_")]:
        monkeypatch.delenv(name)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert not settings.is_sqlite
    assert settings.resolved_database_url().startswith("postgresql+asyncpg://lightbox:")
    assert settings.resolved_storage_url() == "s3://lightbox/pacs"
    assert settings.auto_migrate is False
    # the optional settings left empty by compose's ${VAR:-} are unset, not empty strings
    assert settings.auth.oidc_issuer is None
    assert settings.s3.server_side_encryption is None
    assert settings.public_base_url == "http://localhost:8080/dicom-web"
    assert settings.dimse.host == "0.0.0.0"
    assert settings.dimse.ae_title == "LIGHTBOX"
    assert settings.dimse.allowed_peers == []


def test_compose_passes_the_dimse_allow_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        (ROOT / ".env.example").read_text()
        + "LIGHTBOX_DIMSE_AE_TITLE=PACS1\n"
        + 'LIGHTBOX_DIMSE_ALLOWED_PEERS=[{"ae_title": "CT1"}, {"ae_title": "WS1"}]\n'
    )
    env = _environment(config(env_file)["services"]["lightbox"])
    for name in [k for k in os.environ if k.startswith("LIGHTBOX_")]:
        monkeypatch.delenv(name)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    dimse = Settings().dimse
    assert dimse.ae_title == "PACS1"
    assert [peer.ae_title for peer in dimse.allowed_peers] == ["CT1", "WS1"]


def test_keycloak_profile_is_wired_to_the_oidc_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = config(keycloak_env(tmp_path))
    assert "keycloak" in cfg["services"]
    keycloak = cfg["services"]["keycloak"]
    assert keycloak["profiles"] == ["keycloak"]
    realm_mount = [v for v in keycloak["volumes"] if "lightbox-realm.json" in str(v)]
    assert realm_mount
    env = _environment(cfg["services"]["lightbox"])
    for name in [k for k in os.environ if k.startswith("LIGHTBOX_")]:
        monkeypatch.delenv(name)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    auth = Settings().auth
    kc_env = _environment(keycloak)
    realm = json.loads((ROOT / "deploy/keycloak/lightbox-realm.json").read_text())
    # the issuer Keycloak writes into tokens (its KC_HOSTNAME + the realm) is the one trusted
    assert auth.oidc_issuer == f"{kc_env['KC_HOSTNAME']}/realms/{realm['realm']}"
    assert auth.oidc_jwks_uri == (
        f"http://keycloak:8080/realms/{realm['realm']}/protocol/openid-connect/certs"
    )
    # the realm's audience mapper puts Lightbox's audience into its access tokens
    mappers = [m for s in realm["clientScopes"] for m in s["protocolMappers"]]
    audiences = {m["config"]["included.custom.audience"] for m in mappers}
    assert audiences == {auth.oidc_audience}
    # each realm role grants the permission it is named for, nothing else does
    roles = {r["name"] for r in realm["roles"]["realm"]}
    mapping = build_mapping(auth)
    expected = {
        "pacs-reader": Permission.READ,
        "pacs-writer": Permission.WRITE,
        "pacs-deleter": Permission.DELETE,
        "pacs-admin": Permission.ADMIN,
    }
    assert roles == set(expected)
    for role, permission in expected.items():
        caller = mapping.principal(
            {"sub": "u", "realm_access": {"roles": [role, "offline_access"]}}
        )
        assert caller.permissions == frozenset({permission}), role
    # every client asks for the audience scope; the machine client's secret is not shipped
    for client in realm["clients"]:
        assert "lightbox-audience" in client["defaultClientScopes"]
        assert "secret" not in client


def test_compose_refuses_missing_secrets(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    done = compose_config(empty)
    assert done.returncode != 0
    assert "set POSTGRES_PASSWORD in .env" in done.stderr


def test_haproxy_configuration_is_valid() -> None:
    haproxy = shutil.which("haproxy")
    assert haproxy is not None, "haproxy is not installed (.ci/run installs it)"
    done = subprocess.run(
        [haproxy, "-c", "-f", str(ROOT / "deploy/haproxy/haproxy.cfg")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    text = (ROOT / "deploy/haproxy/haproxy.cfg").read_text()
    assert "balance leastconn" in text
    assert "option httpchk GET /readyz" in text
    # DIMSE associations are balanced as TCP streams
    dimse = text[text.index("frontend dimse") :]
    assert "mode tcp" in dimse
    assert "bind :11112" in dimse


def _instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined, comments dropped."""
    joined = dockerfile.replace("\\\n", " ")
    items = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            items.append((word.upper(), " ".join(rest.split())))
    return items


def test_dockerfile_rules() -> None:
    steps = _instructions((ROOT / "Dockerfile").read_text())
    runtime = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM") :]
    users = [args for word, args in runtime if word == "USER"]
    assert users
    assert users[-1].split(":")[0] not in ("root", "0")
    health = [args for word, args in runtime if word == "HEALTHCHECK"]
    assert len(health) == 1
    assert '["lightbox", "healthcheck"]' in health[0]
    assert "8080" not in health[0]
    assert "http" not in health[0]
    runs = " ".join(args for word, args in runtime if word == "RUN")
    assert "fonts-dejavu-core" in runs
    assert "--no-install-recommends" in runs
    copies = [args for word, args in runtime if word == "COPY"]
    assert "alembic ./alembic" in copies
    env = " ".join(args for word, args in runtime if word == "ENV")
    assert "LIGHTBOX_MIGRATIONS_DIR=/srv/lightbox/alembic" in env
    # the build installs the project without its [dev] extra
    build = " ".join(args for word, args in steps if word == "RUN")
    assert "pip wheel --wheel-dir /wheels ." in build
    assert "[dev]" not in build


def test_dockerignore_keeps_patient_data_and_caches_out() -> None:
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for needed in (
        "lightbox-data/",
        "**/lightbox-data/",
        "**/signing-key.pem",
        ".venv/",
        ".env",
        ".git/",
        "**/__pycache__/",
        ".mypy_cache/",
        ".ruff_cache/",
        ".pytest_cache/",
        ".cache/",
    ):
        assert needed in patterns, needed
    # and what the Dockerfile copies is not excluded
    for copied in ("pyproject.toml", "README.md", "LICENSE", "app/", "alembic/"):
        assert copied not in patterns
