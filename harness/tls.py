"""TLS for the tests and the bench: an authority of the run's own, a server's files, and what a
private broker node and a private Redis need to speak TLS.

The files are made as `provision` makes a deployment's (`provision.certificates`), for the names
the tests dial: `localhost` by default, so that a client dialling 127.0.0.1 finds a certificate
that does not name it. A second authority stands for the wrong CA.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from provision.certificates import Authority

HOST = "localhost"  # the name a client dials to find the servers' certificates valid


@dataclass(frozen=True)
class TlsFiles:
    """An authority's certificate (`ca`), a server's certificate and key it signed, and the
    certificate of another authority that signed nothing here (`other_ca`)."""

    ca: Path
    cert: Path
    key: Path
    other_ca: Path

    @classmethod
    def make(cls, directory: Path, names: Sequence[str] = (HOST,)) -> TlsFiles:
        directory.mkdir(parents=True, exist_ok=True)
        authority = Authority.new("RabbitHoleMQ tests")
        key, cert = authority.issue(names)
        stranger = Authority.new("an authority nobody here trusts")
        files = cls(*(directory / name for name in ("ca.pem", "cert.pem", "key.pem", "other.pem")))
        files.ca.write_bytes(authority.certificate_pem())
        files.cert.write_bytes(cert)
        files.key.write_bytes(key)
        files.other_ca.write_bytes(stranger.certificate_pem())
        return files

    def broker_config(self, port: int) -> list[str]:
        """rabbitmq.conf lines for a TLS listener on 127.0.0.1:`port` that asks clients for no
        certificate, as compose's (rabbitmq/40-tls.conf)."""
        return [
            f"listeners.ssl.1 = 127.0.0.1:{port}",
            f"ssl_options.cacertfile = {self.ca}",
            f"ssl_options.certfile = {self.cert}",
            f"ssl_options.keyfile = {self.key}",
            "ssl_options.verify = verify_none",
            "ssl_options.fail_if_no_peer_cert = false",
        ]

    def redis_arguments(self, port: int) -> list[str]:
        """redis-server's arguments for TLS alone on `port`, as compose's store."""
        return [
            "--port", "0",
            "--tls-port", str(port),
            "--tls-cert-file", str(self.cert),
            "--tls-key-file", str(self.key),
            "--tls-ca-cert-file", str(self.ca),
            "--tls-auth-clients", "no",
        ]  # fmt: skip
