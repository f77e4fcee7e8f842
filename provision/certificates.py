"""A deployment's own certificate authority, and a certificate it signs for each server.

Compose's `provision` step makes the authority at the first start and keeps it; every broker
node and the store get a certificate of their own that names their host (`server_names`: plus
`localhost` and 127.0.0.1, for the ports published on the host and for a healthcheck inside the
container), and every client trusts the authority's certificate alone (AMQP_CA_FILE,
STORE_CA_FILE). Nothing here is a secret but the keys: the authority's stays with `provision`,
each server's with its server.

Keys are ECDSA P-256: every TLS stack here speaks it (Erlang's, OpenSSL's for Python and Redis),
and a key takes a millisecond to make where RSA takes a hundred. Servers present no chain: the
authority signs them directly.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Ten years: the authority outlives any demo; `provision --rotate tls` makes a new one.
AUTHORITY_DAYS = 3650
# 825 days, the longest validity the CA/Browser Forum ever allowed a server certificate;
# `provision` makes a new one once fewer than RENEW_DAYS remain, at any start.
SERVER_DAYS = 825
RENEW_DAYS = 30
# Names every server certificate carries besides its host's: the published ports on the host,
# and a healthcheck inside the server's own container, connect by them.
LOCAL_NAMES = ("localhost", "127.0.0.1")
# A certificate dated from a little before now: a client whose clock is a little behind
# still takes it.
CLOCK_SKEW = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class Authority:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def new(cls, name: str = "RabbitHoleMQ deployment CA") -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        certificate = (
            _builder(subject, subject, key.public_key(), AUTHORITY_DAYS)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_usage(cert_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    @classmethod
    def load(cls, key_pem: bytes, certificate_pem: bytes) -> Authority:
        """The authority kept as these two files; ValueError if they are not a pair."""
        key = serialization.load_pem_private_key(key_pem, password=None)
        certificate = x509.load_pem_x509_certificate(certificate_pem)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not _pair(key, certificate):
            raise ValueError("the authority's key and certificate are not one pair")
        return cls(key, certificate)

    def key_pem(self) -> bytes:
        return private_pem(self.key)

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(self, names: Sequence[str], *, days: int = SERVER_DAYS) -> tuple[bytes, bytes]:
        """A new key and a certificate for a server known by `names` (host names or IP
        addresses, the first also its common name), as PEM."""
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = (
            _builder(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]),
                self.certificate.subject,
                key.public_key(),
                days,
            )
            .add_extension(x509.SubjectAlternativeName(_general_names(names)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
            )
            .sign(self.key, hashes.SHA256())
        )
        return private_pem(key), certificate.public_bytes(serialization.Encoding.PEM)

    def still_serves(self, key_pem: bytes, certificate_pem: bytes, names: Sequence[str]) -> bool:
        """Whether the certificate in `certificate_pem` is this authority's, goes with the key
        in `key_pem`, holds `names` as `issue` would, and has more than RENEW_DAYS to run."""
        try:
            certificate = x509.load_pem_x509_certificate(certificate_pem)
            certificate.verify_directly_issued_by(self.certificate)
            held = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
            return False
        if not _pair(key, certificate):
            return False  # a write cut short between the two files
        left = certificate.not_valid_after_utc - _now()
        renew = left <= datetime.timedelta(days=RENEW_DAYS)
        return held.value == x509.SubjectAlternativeName(_general_names(names)) and not renew


def _pair(key: object, certificate: x509.Certificate) -> bool:
    public = getattr(key, "public_key", None)
    return public is not None and public() == certificate.public_key()


def private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, days: int
) -> x509.CertificateBuilder:
    start = _now() - CLOCK_SKEW
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
    )


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def server_names(host: str) -> tuple[str, ...]:
    """The names a deployment's server `host` is reached by: its own, then LOCAL_NAMES."""
    return tuple(dict.fromkeys((host, *LOCAL_NAMES)))  # in order, each once


def _general_names(names: Sequence[str]) -> list[x509.GeneralName]:
    general: list[x509.GeneralName] = []
    for name in names:
        try:
            general.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            general.append(x509.DNSName(name))
    return general
