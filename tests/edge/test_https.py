"""The device agent syncs from a static host over HTTPS, trusting the repository's CA through ``SSL_CERT_FILE``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from edge_support import Setup, edge
from helpers import listening_hosts
from tls_support import make_certs

from ferry.cli.processes import StaticHost
from ferry.online.tls import check

pytestmark = pytest.mark.integration


@pytest.fixture
def https_hosts() -> Iterator[list[StaticHost]]:
    hosts: list[StaticHost] = []
    yield hosts
    for host in hosts:
        host.stop()


def test_a_device_syncs_over_https_once_it_trusts_the_ca(
    tmp_path: Path, churn_champion: dict[str, str], https_hosts: list[StaticHost]
) -> None:
    certs = make_certs(tmp_path / "certs")
    tls = check(certs.server_cert, certs.server_key)

    def serve(directory: Path) -> str:
        https_hosts.append(StaticHost(directory, tls=tls, client=certs.client(cert=False)).start())
        return https_hosts[-1].url

    setup = Setup(tmp_path, churn_champion, serve)
    assert setup.url.startswith("https://127.0.0.1:")
    assert https_hosts[0].process is not None
    assert listening_hosts(https_hosts[0].process.pid) == {"127.0.0.1"}  # the static host binds 127.0.0.1
    home = setup.agent.home
    plain = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    untrusted = edge(home, "sync", env={**plain, "SSL_CERT_FILE": str(certs.other_ca)})
    assert untrusted.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr + untrusted.stdout, untrusted.stderr
    trusted = edge(home, "sync", env={**plain, "SSL_CERT_FILE": str(certs.ca)})
    assert trusted.returncode == 0, trusted.stderr
    status = json.loads(edge(home, "status").stdout)
    assert status["active_version"] == setup.version.id
