"""TLS: ``ferry serve --ssl-*`` checks its files before it starts anything, and a real ``bentoml serve`` over HTTPS
with mutual TLS (certificates made in the test) answers a client with the right CA and certificate only."""

from __future__ import annotations

import inspect
import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import copy_registry, listening_hosts
from online_support import KEY, demo_records
from tls_support import Certs, make_certs
from typer.testing import CliRunner

from ferry.cli import app
from ferry.cli.processes import Service
from ferry.cli.serve import serve as serve_fn
from ferry.online.auth import hash_key
from ferry.online.tls import check


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def serve(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["serve", *args], env={"COLUMNS": "400", **(env or {})})
    return result.exit_code, result.output


def test_a_mismatched_key_and_certificate_is_one_clear_line_before_anything_starts(
    certs: Certs, tmp_path: Path
) -> None:
    code, out = serve("--ssl-certfile", str(certs.server_cert), "--ssl-keyfile", str(certs.other_key))
    assert code == 2
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    assert "--ssl-keyfile" in lines[0], out
    assert "is not the private key of the certificate" in lines[0], out
    # the same through the settings
    env = {"FERRY_ONLINE_SSL_CERTFILE": str(certs.server_cert), "FERRY_ONLINE_SSL_KEYFILE": str(certs.client_key)}
    code, out = serve(env=env)
    assert code == 2, out
    assert "is not the private key of the certificate" in out, out


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--ssl-certfile", "{server_cert}"), "--ssl-certfile was given without --ssl-keyfile"),
        (("--ssl-keyfile", "{server_key}"), "--ssl-keyfile was given without --ssl-certfile"),
        (("--ssl-ca-certs", "{ca}"), "--ssl-ca-certs needs --ssl-certfile and --ssl-keyfile"),
        (("--ssl-certfile", "{missing}", "--ssl-keyfile", "{server_key}"), "no such file"),
        (("--ssl-certfile", "{server_key}", "--ssl-keyfile", "{server_key}"), "cannot be loaded as a PEM"),
        (
            ("--ssl-certfile", "{server_cert}", "--ssl-keyfile", "{server_key}", "--ssl-ca-certs", "{server_key}"),
            "--ssl-ca-certs",
        ),
    ],
)
def test_every_bad_tls_option_is_named(certs: Certs, tmp_path: Path, args: tuple[str, ...], says: str) -> None:
    paths = {**{k: str(v) for k, v in vars(certs).items()}, "missing": str(tmp_path / "nope.pem")}
    code, out = serve(*(a.format(**paths) for a in args))
    assert code == 2, out
    assert says in out, out
    assert len(out.strip().splitlines()) == 1, out


def test_good_files_become_bentoml_options(certs: Certs) -> None:
    tls = check(certs.server_cert, certs.server_key, certs.ca)
    assert tls is not None
    assert tls.bentoml_args() == [
        "--ssl-certfile", str(certs.server_cert), "--ssl-keyfile", str(certs.server_key),
        "--ssl-ca-certs", str(certs.ca), "--ssl-cert-reqs", "2",
    ]  # fmt: skip
    assert check(None, None) is None


@pytest.fixture(scope="module")
def mtls(certs: Certs, churn_champion: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One ``bentoml serve`` over HTTPS that requires client certificates signed by the test CA."""
    tmp = tmp_path_factory.mktemp("tls")
    registry = copy_registry(churn_champion, tmp / "registry")
    keys = [{"name": "tests", "sha256": hash_key(KEY), "scopes": ["predict"]}]
    env = {
        "FERRY_REGISTRY_URL": registry.url,
        "BENTOML_HOME": str(tmp / "bentoml-home"),
        "FERRY_ONLINE_API_KEYS": json.dumps(keys),
        "FERRY_ONLINE_DOCS_REQUIRE_KEY": "false",
    }
    tls = check(certs.server_cert, certs.server_key, certs.ca)
    with Service(tmp / "serve.log", env=env, tls=tls, client=certs.client()) as service:
        yield service


@pytest.mark.integration
def test_https_with_the_right_ca_and_a_client_certificate_answers(
    mtls: Service, certs: Certs, churn_champion: dict[str, str]
) -> None:
    assert mtls.url.startswith("https://127.0.0.1:")
    record = demo_records(churn_champion, 1)[0]
    with httpx.Client(verify=certs.client(), timeout=10) as client:
        answer = client.post(
            mtls.url + "/predict", json={"records": record}, headers={"Authorization": f"Bearer {KEY}"}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["version"] == churn_champion["version"]
        assert client.post(mtls.url + "/predict", json={"records": record}).status_code == 401  # TLS is not a key
    with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port gets no answer
        httpx.get(mtls.url.replace("https://", "http://") + "/readyz", timeout=5)


@pytest.mark.integration
def test_a_client_trusting_another_ca_refuses_the_server(mtls: Service, certs: Certs) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(mtls.url + "/readyz", verify=certs.client(trust=certs.other_ca), timeout=5)


def _raw_get(url: str, context: ssl.SSLContext) -> bytes:
    """What a raw TLS client reads back from ``GET /readyz``: the answer's bytes, or the TLS error's text."""
    port = int(url.rpartition(":")[2])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        try:  # TLS 1.3: the server checks the client's certificate after the client's handshake has finished
            tls.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return tls.recv(1024)
        except ssl.SSLError as exc:
            return str(exc).encode()


@pytest.mark.integration
def test_under_mutual_tls_a_client_without_a_certificate_is_refused(mtls: Service, certs: Certs) -> None:
    """Without a client certificate the server closes the connection without an answer (or with TLS's
    certificate_required alert); the same request with the certificate is answered."""
    refused = _raw_get(mtls.url, certs.client(cert=False))
    assert refused == b"" or b"CERTIFICATE_REQUIRED" in refused, refused
    assert _raw_get(mtls.url, certs.client()).startswith(b"HTTP/1.1 200"), "the certificate should be accepted"
    with pytest.raises(httpx.HTTPError):
        httpx.get(mtls.url + "/readyz", verify=certs.client(cert=False), timeout=5)


@pytest.mark.integration
def test_the_service_listens_on_127_0_0_1_only_and_its_docs_can_be_opened(mtls: Service, certs: Certs) -> None:
    """``ferry serve``'s default interface is 127.0.0.1, and every socket the service's processes listen on is
    there; FERRY_ONLINE_DOCS_REQUIRE_KEY=false opens the API docs (they need a key by default), not the API."""
    assert mtls.process is not None
    assert listening_hosts(mtls.process.pid) == {"127.0.0.1"}
    assert inspect.signature(serve_fn).parameters["host"].default == "127.0.0.1"
    with httpx.Client(verify=certs.client(), timeout=10) as client:
        assert client.get(mtls.url + "/docs.json").status_code == 200
        assert client.get(mtls.url + "/").status_code == 200
        assert client.post(mtls.url + "/model").status_code == 401
