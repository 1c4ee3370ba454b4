"""``lightbox serve`` with access control on (the default), ``lightbox token create``, TLS."""

import datetime
import ipaddress
import os
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import generate_uid
from typer.testing import CliRunner

from app.cli import cli, parse_ttl
from tests.e2e.server import add_admin, running_server, server_env
from tests.factories import make_dataset
from tests.ports import free_port


def _token(data_dir: Path, database_url: str, *args: str, flag: bool = False) -> str:
    """``lightbox token create``: the data directory from the environment, or with ``flag``
    from ``--data-dir`` only (run from another directory, as an operator would)."""
    env = server_env(data_dir, database_url)
    env.pop("LIGHTBOX_AUTH__ENABLED")
    if flag:
        env.pop("LIGHTBOX_DATA_DIR")
        args = ("--data-dir", str(data_dir), *args)
    done = subprocess.run(
        [sys.executable, "-m", "app", "token", "create", *args],
        env={**env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        cwd=data_dir.parent if flag else None,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


HINT = "lightbox token create --data-dir"


def test_serve_first_start_then_tokens(fresh_database_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    env = server_env(
        data_dir, fresh_database_url, LIGHTBOX_PUBLIC_BASE_URL=f"http://127.0.0.1:{port}/dicom-web"
    )
    env.pop("LIGHTBOX_AUTH__ENABLED")  # the production default: on
    with running_server(env, port=port) as server:
        log = server.log.read_text()
        assert "created the token signing key" in log
        # how to get a token, with the server's own data directory
        assert f"{HINT} {data_dir.resolve()} --subject admin" in log
        # the web pages, and the way to their first administrator (there is no default one)
        assert f"web pages at http://127.0.0.1:{port}/" in log
        assert "lightbox user add admin --role admin" in log
        assert httpx.get(f"{server.url}/").status_code == 303
        assert (data_dir / "auth" / "signing-key.pem").stat().st_mode & 0o077 == 0
        assert httpx.get(f"{server.dicomweb}/studies").status_code == 401

        writer = _token(
            data_dir,
            fresh_database_url,
            "--subject",
            "writer",
            "--scope",
            "read",
            "--scope",
            "write",
            "--ttl",
            "10m",
            flag=True,
        )
        client = DICOMwebClient(server.dicomweb, headers={"Authorization": f"Bearer {writer}"})
        a, b = generate_uid(), generate_uid()
        client.store_instances([make_dataset(StudyInstanceUID=a), make_dataset(StudyInstanceUID=b)])
        assert {s["0020000D"]["Value"][0] for s in client.search_for_studies()} == {a, b}

        share = _token(
            data_dir, fresh_database_url, "--subject", "share", "--study", a, "--ttl", "7d"
        )
        shared = DICOMwebClient(server.dicomweb, headers={"Authorization": f"Bearer {share}"})
        assert [s["0020000D"]["Value"][0] for s in shared.search_for_studies()] == [a]
        with pytest.raises(Exception, match="403"):
            shared.retrieve_study_metadata(b)
        assert len(shared.retrieve_study_metadata(a)) == 1

    # a second start finds the key; no admin token yet, so it says again how to get one
    with running_server(env, port=free_port()) as again:
        assert again.log != server.log
        log = again.log.read_text()
        assert "created the token signing key" not in log
        assert HINT in log
        assert "no administrator can sign in" in log
    _token(data_dir, fresh_database_url, "--subject", "root", "--scope", "read,admin", flag=True)
    add_admin(
        {k: v for k, v in env.items() if k != "LIGHTBOX_AUTO_MIGRATE"}, "correct horse battery"
    )
    # an admin token is active and an administrator can sign in: neither hint is printed
    with running_server(env, port=free_port()) as third:
        log = third.log.read_text()
        assert HINT not in log
        assert "no administrator can sign in" not in log


def test_token_create_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("LIGHTBOX_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("LIGHTBOX_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    bad = runner.invoke(cli, ["token", "create", "--subject", "x", "--scope", "superuser"])
    assert bad.exit_code == 2
    assert "unknown scope superuser" in bad.output
    bad_ttl = runner.invoke(cli, ["token", "create", "--subject", "x", "--ttl", "soon"])
    assert bad_ttl.exit_code == 2
    good = runner.invoke(
        cli, ["token", "create", "--subject", "dr", "--scope", "read,admin", "--patient", "P1"]
    )
    assert good.exit_code == 0, good.output
    import jwt

    token = good.stdout.strip().splitlines()[-1]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["scope"] == "read admin"
    assert claims["lightbox_patients"] == ["P1"]
    assert claims["exp"] - claims["iat"] == 3600
    # the issuance itself is audited
    verify = runner.invoke(cli, ["audit", "export"])
    assert verify.exit_code == 0, verify.output
    assert '"action": "token-issued"' in verify.output
    assert "subject=dr" in verify.output


def test_parse_ttl() -> None:
    assert parse_ttl("90s") == 90
    assert parse_ttl("2w") == 1209600
    with pytest.raises(Exception, match="not a duration"):
        parse_ttl("-5m")


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_tls(fresh_database_url: str, tmp_path: Path, workers: int) -> None:
    """TLS on one worker, and on two (gunicorn's workers: each makes its own handshakes with
    the uvicorn settings a single process has)."""
    cert, key = _self_signed(tmp_path)
    data_dir = tmp_path / "data"
    env = server_env(data_dir, fresh_database_url)
    env.pop("LIGHTBOX_AUTH__ENABLED")
    args = ["--ssl-certfile", str(cert), "--ssl-keyfile", str(key), "--workers", str(workers)]
    with running_server(env, args=args, tls_ca=cert) as server:
        assert server.url.startswith("https://")
        token = _token(data_dir, fresh_database_url, "--subject", "tls", "--ttl", "5m")
        context = ssl.create_default_context(cafile=str(cert))
        for _ in range(4):  # new connections: both workers, when there are two
            response = httpx.get(
                f"{server.dicomweb}/studies",
                headers={"Authorization": f"Bearer {token}"},
                verify=context,
            )
            assert response.status_code == 204
        # a client that is not speaking TLS is refused, and the server goes on
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{server.port}/readyz", timeout=5)
        assert httpx.get(f"{server.url}/readyz", verify=context).status_code == 200
        assert "https://127.0.0.1" in server.log.read_text()
