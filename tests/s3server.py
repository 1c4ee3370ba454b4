"""Pytest plugin: a moto S3 server on 127.0.0.1 for the whole session.

Register with ``pytest_plugins = ["tests.s3server"]``. Fixtures:

- ``s3_server``: a :class:`S3Server` (endpoint, region, dummy credentials, ``create_bucket()``).
- ``s3_bucket``: a fresh, empty bucket name per test.
"""

import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer


@dataclass(frozen=True)
class S3Server:
    """Connection details of the running moto server."""

    endpoint: str
    region: str = "us-east-1"
    access_key_id: str = "testing"
    secret_access_key: str = "testing"
    client: Any = field(default=None, repr=False, compare=False)  # boto3 S3 client

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a unique name unless given) and return its name."""
        bucket = name or f"lightbox-test-{uuid.uuid4().hex[:16]}"
        self.client.create_bucket(Bucket=bucket)
        return bucket


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """Start moto's threaded S3 server on a free loopback port; stop it after the session."""
    # werkzeug logs every request at INFO; the interesting failures surface in the tests.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    client = None
    try:
        host, port = server.get_host_and_port()  # the port the OS chose for port=0
        endpoint = f"http://{host}:{port}"
        info = S3Server(endpoint=endpoint)
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=info.region,
            aws_access_key_id=info.access_key_id,
            aws_secret_access_key=info.secret_access_key,
        )
        yield S3Server(endpoint=endpoint, client=client)
    finally:
        if client is not None:
            client.close()
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A new empty bucket for one test."""
    return s3_server.create_bucket()
