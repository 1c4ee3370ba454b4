"""A real OpenID Connect provider for the tests: the npm package ``oidc-provider`` (a certified
implementation), pinned by ``tests/web/oidc/package-lock.json``, run by ``provider.mjs``.

Installed with ``npm ci`` (which checks every package against the lock file's integrity hashes)
into ``.cache/oidc-provider/<hash of the lock file>`` of the repository (git-ignored) on first
use; later runs reuse it. Standard library only: ``.ci/run`` installs it with the system Python
before the virtualenv exists::

    python3 -m tests.web.oidc_provider

:func:`running_provider` starts it on 127.0.0.1 with the given clients and accounts and waits
for its discovery document.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.ports import free_port
from tests.processes import stop

SOURCE = Path(__file__).resolve().parent / "oidc"
CACHE = Path(__file__).resolve().parents[2] / ".cache" / "oidc-provider"
NPM_TIMEOUT = 600
START_TIMEOUT = 30


class ProviderUnavailable(RuntimeError):
    """The provider could not be installed or started (no node or npm, no registry)."""


def install_dir(cache: Path = CACHE) -> Path:
    """Where this lock file's packages are installed (a new lock file, a new directory)."""
    digest = hashlib.sha256((SOURCE / "package-lock.json").read_bytes()).hexdigest()[:16]
    return cache / digest


def install(cache: Path = CACHE) -> Path:
    """The directory holding ``node_modules`` and ``provider.mjs``, installed when missing."""
    target = install_dir(cache)
    if not (target / "node_modules" / "oidc-provider" / "package.json").is_file():
        npm = shutil.which("npm")
        if npm is None or shutil.which("node") is None:
            raise ProviderUnavailable(
                "node and npm are needed for the OpenID Connect provider of the tests: "
                "apt-get install npm"
            )
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache, prefix="install-") as tmp:
            work = Path(tmp)
            for name in ("package.json", "package-lock.json"):
                shutil.copy(SOURCE / name, work / name)
            try:
                done = subprocess.run(
                    [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
                    cwd=work,
                    capture_output=True,
                    text=True,
                    timeout=NPM_TIMEOUT,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise ProviderUnavailable("npm ci of the test OpenID provider timed out") from exc
            if done.returncode != 0:
                raise ProviderUnavailable(
                    f"npm ci of the test OpenID provider failed: {done.stderr[-2000:]}"
                )
            try:
                os.replace(work, target)  # atomic: complete or absent
            except OSError:
                if not (target / "node_modules").is_dir():  # not a concurrent install that won
                    raise
            work.mkdir(exist_ok=True)  # for TemporaryDirectory's clean-up
    # the script is ours and small: copied when it changed, so an edit takes effect; replaced
    # atomically, as another xdist worker's node may be reading it
    script = (SOURCE / "provider.mjs").read_bytes()
    installed = target / "provider.mjs"
    if not installed.is_file() or installed.read_bytes() != script:
        partial = target / f"provider.mjs.{os.getpid()}"
        partial.write_bytes(script)
        os.replace(partial, installed)
    return target


@dataclass
class RunningProvider:
    """A provider process and where it is."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def discovery(self) -> dict[str, Any]:
        with urllib.request.urlopen(
            f"{self.issuer}/.well-known/openid-configuration", timeout=5
        ) as response:
            document: dict[str, Any] = json.load(response)
            return document


@contextmanager
def running_provider(
    clients: Sequence[Mapping[str, Any]],
    accounts: Mapping[str, Mapping[str, Any]],
    *,
    log_dir: Path,
    port: int | None = None,
) -> Iterator[RunningProvider]:
    """Start the provider, wait for its discovery document, stop it afterwards."""
    node = shutil.which("node")
    if node is None:
        raise ProviderUnavailable("node is needed for the test OpenID provider")
    directory = install()
    port = port or free_port()
    log = log_dir / f"oidc-provider-{port}.log"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PORT": str(port),
        "CLIENTS": json.dumps(list(clients)),
        "ACCOUNTS": json.dumps(dict(accounts)),
        "NODE_ENV": "test",
    }
    with log.open("ab") as out:
        process = subprocess.Popen(
            [node, "provider.mjs"],
            cwd=directory,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    provider = RunningProvider(process, port, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise ProviderUnavailable(f"the provider exited: {log.read_text()[-2000:]}")
            try:
                provider.discovery()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise ProviderUnavailable(
                        f"the provider did not start: {log.read_text()[-2000:]}"
                    ) from None
                time.sleep(0.1)
        yield provider
    finally:
        if process.poll() is None:
            stop(process, timeout=10)


if __name__ == "__main__":
    try:
        print(install())  # noqa: T201 (a command-line tool)
    except ProviderUnavailable as exc:
        sys.exit(f"error: {exc}")
