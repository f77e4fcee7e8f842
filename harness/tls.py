"""TLS for the tests and the bench: an authority of the run's own, a server's files, and what a
private broker node and a private Redis need to speak TLS.

The files are made as `provision` makes a deployment's (`provision.certificates`), for the names
the tests dial: `localhost` by default, so that a client dialling 127.0.0.1 finds a certificate
that does not name it. A second authority stands for the wrong CA. `TlsNode` is a private node
with a TLS listener beside its plain one (which the harness's own looks use), and `NodeVhost` a
virtual host on it that the pipeline's processes dial over TLS, or in clear: the same node both
ways, for the bench's row with TLS and the one without.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from harness.broker import Vhost, unique_name, with_vhost
from harness.private_broker import PrivateBroker, free_ports
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
            "ssl_options.versions.1 = tlsv1.3",
            "ssl_options.versions.2 = tlsv1.2",
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


class TlsNode:
    """A private RabbitMQ node under `base_dir` with TLS on `tls_port` as well as AMQP in clear
    on `node.port`; `destroy()` when done."""

    def __init__(self, base_dir: Path) -> None:
        self.files = TlsFiles.make(base_dir / "tls")
        [self.tls_port] = free_ports(1)
        self.node = PrivateBroker(base_dir, config=self.files.broker_config(self.tls_port))

    def start(self) -> None:
        self.node.start()
        self.node.wait_until_ready()

    def destroy(self, keep_logs_in: Path | None = None) -> None:
        self.node.destroy(keep_logs_in)

    def tls_url(self, vhost: str = "/", host: str = HOST) -> str:
        return f"amqps://guest:guest@{host}:{self.tls_port}/{quote(vhost, safe='')}"


class NodeVhost(Vhost):
    """A virtual host of its own on `node`, with `Vhost`'s helpers (in clear); the pipeline's
    processes dial it over TLS (`node_urls`, `client_env`) when `tls`, else in clear."""

    def __init__(self, node: TlsNode, label: str = "node", *, tls: bool = False) -> None:
        # No super().__init__: it would make the vhost on the shared broker.
        self.tls_node, self.tls = node, tls
        self.name = unique_name(label)
        self.url = with_vhost(node.node.url, self.name)
        node.node.rabbitmqctl("add_vhost", self.name)
        node.node.rabbitmqctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")

    @property
    def node_urls(self) -> list[str]:
        return [self.tls_node.tls_url(self.name) if self.tls else self.url]

    @property
    def client_env(self) -> dict[str, str]:
        return {"AMQP_CA_FILE": str(self.tls_node.files.ca)} if self.tls else {}

    def delete(self) -> None:
        with contextlib.suppress(AssertionError):
            self.tls_node.node.rabbitmqctl("delete_vhost", self.name, timeout=120)
