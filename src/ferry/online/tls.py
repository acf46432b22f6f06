"""TLS for the online service: the certificate, key and client CA ``ferry serve`` hands to BentoML's own TLS support.

BentoML serves HTTPS through uvicorn when ``bentoml serve`` gets ``--ssl-certfile`` and ``--ssl-keyfile``; with
``--ssl-ca-certs`` and ``--ssl-cert-reqs 2`` (``ssl.CERT_REQUIRED``) it also requires a client certificate signed
by that CA (mutual TLS). :func:`check` loads the files the way the server will before anything is started, so a
missing file, a key that does not belong to the certificate or an unreadable CA file is one clear line, not a
worker that dies in a log.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from ferry.errors import ConfigError

__all__ = ["TlsFiles", "check"]


@dataclass(frozen=True)
class TlsFiles:
    """The server's certificate chain and private key (PEM), and optionally the CA that signs client certificates."""

    certfile: Path
    keyfile: Path
    ca_certs: Path | None = None

    def bentoml_args(self) -> list[str]:
        """The ``bentoml serve`` options that turn TLS on (and require client certificates when a CA is given)."""
        args = ["--ssl-certfile", str(self.certfile), "--ssl-keyfile", str(self.keyfile)]
        if self.ca_certs is not None:
            args += ["--ssl-ca-certs", str(self.ca_certs), "--ssl-cert-reqs", str(int(ssl.CERT_REQUIRED))]
        return args


def check(certfile: Path | None, keyfile: Path | None, ca_certs: Path | None = None) -> TlsFiles | None:
    """The TLS files, checked by loading them as the server will; None when no TLS is asked for.

    ConfigError names the option and the reason: one of certificate and key without the other, a file that is
    missing, a key that does not match the certificate, a CA file without TLS or that holds no certificate.
    """
    if certfile is None and keyfile is None:
        if ca_certs is not None:
            raise ConfigError("--ssl-ca-certs needs --ssl-certfile and --ssl-keyfile: client certificates need TLS")
        return None
    if certfile is None or keyfile is None:
        given, missing = ("--ssl-certfile", "--ssl-keyfile") if keyfile is None else ("--ssl-keyfile", "--ssl-certfile")
        raise ConfigError(f"{given} was given without {missing}: TLS needs both the certificate and its private key")
    for option, path in (("--ssl-certfile", certfile), ("--ssl-keyfile", keyfile), ("--ssl-ca-certs", ca_certs)):
        if path is not None and not path.is_file():
            raise ConfigError(f"{option} {path}: no such file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            raise ConfigError(
                f"--ssl-keyfile {keyfile} is not the private key of the certificate in --ssl-certfile {certfile}; "
                f"give the key the certificate was issued for"
            ) from exc
        raise ConfigError(
            f"--ssl-certfile {certfile} / --ssl-keyfile {keyfile} cannot be loaded as a PEM certificate chain and "
            f"its unencrypted private key ({exc.reason or exc})"
        ) from exc
    if ca_certs is not None:
        try:
            context.load_verify_locations(cafile=ca_certs)
        except ssl.SSLError as exc:
            raise ConfigError(
                f"--ssl-ca-certs {ca_certs} holds no PEM certificate ({exc.reason or exc}); give the CA that signs "
                f"the client certificates"
            ) from exc
    return TlsFiles(certfile, keyfile, ca_certs)
