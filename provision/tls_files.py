"""The deployment's TLS files, made at the first start and kept: the authority, a certificate for
each server, and the authority's certificate for every client.

Under `python -m provision DIR` (compose mounts a volume at each directory):

    DIR/ca/ca.key, DIR/ca/ca.pem        the authority (`provision.certificates`): only
                                        `provision` mounts it, so no container but this one-shot
                                        step can sign a certificate
    DIR/tls/<host>/{cert,key,ca}.pem    a server's key and certificate, for the host its
                                        directory is named after (a broker node, the store), and
                                        the authority's certificate; made for every such
                                        directory there is (a volume the compose files mount),
                                        readable by any user in the one container that mounts it
                                        (the server's own user differs from one image to another)
    DIR/<role>/ca.pem                   the authority's certificate, beside each role's password:
                                        every client trusts it alone (AMQP_CA_FILE,
                                        STORE_CA_FILE)

A server's certificate is made again when the authority is new (`--rotate tls`), when it does
not name its host as it should, does not go with its key, or has RENEW_DAYS or fewer to run;
else it is kept. A server reads its certificate when it starts: one made anew serves once that
server is started again (`docker compose up -d --force-recreate`), which `provision` says.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path

from provision.certificates import Authority, server_names
from provision.secret_files import write_secret

TLS = "tls"  # the name `--rotate` knows the authority by (and so every certificate)


def keep_or_make_authority(directory: Path, rotating: bool) -> tuple[Authority, bool]:
    """The authority kept in `directory` (unless rotating), or a new one written there; and
    whether it is new."""
    key, certificate = directory / "ca.key", directory / "ca.pem"
    if not rotating and key.exists() and certificate.exists():
        with contextlib.suppress(ValueError):  # not a pair (a write cut short): a new one
            return Authority.load(key.read_bytes(), certificate.read_bytes()), False
    authority = Authority.new()
    write_secret(key, authority.key_pem().decode(), owner=0)
    write_secret(certificate, authority.certificate_pem().decode())
    return authority, True


def provision_tls(directory: Path, clients: Iterable[str], rotating: bool) -> list[str]:
    """Keep or make the authority, a certificate for every server directory under
    `directory`/tls, and each of `clients`' copy of the authority's certificate; what was made
    anew (`tls` for the authority, then `tls:<host>` for each server)."""
    authority, new = keep_or_make_authority(directory / "ca", rotating)
    ca_pem = authority.certificate_pem().decode()
    made = [TLS] if new else []
    servers = directory / "tls"
    for server in sorted(servers.iterdir()) if servers.is_dir() else ():
        names = server_names(server.name)
        cert, key = server / "cert.pem", server / "key.pem"
        kept = cert.exists() and key.exists()
        if not kept or not authority.still_serves(key.read_bytes(), cert.read_bytes(), names):
            key_pem, cert_pem = authority.issue(names)
            write_secret(key, key_pem.decode())
            write_secret(cert, cert_pem.decode())
            made.append(f"{TLS}:{server.name}")
        write_secret(server / "ca.pem", ca_pem)
    for client in clients:
        write_secret(directory / client / "ca.pem", ca_pem)
    return made
