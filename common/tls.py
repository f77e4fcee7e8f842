"""TLS for the clients: verify the server's certificate and host name, and say plainly why not.

A client trusts the CAs of one PEM file (AMQP_CA_FILE, STORE_CA_FILE: in compose, the
deployment's own authority, `provision.certificates`), or the system's when none is named, and
checks that the certificate names the host it dialled. Python's default context does both.

Some TLS failures no retry mends (`refusal`: used by `common.refusals` for the broker and
`last.redis_store` for the store), and each gets one line that says what to fix: a certificate
no trusted CA signed, one that names another host or is out of date, a TLS client on a plain
port, a plain client on a TLS port. The last two look like other failures (a handshake that
fails, a connection cut before the protocol began), so `handshake_answer` asks the port, once,
which protocol it speaks, and only a clear answer ends the process: a server that is down or
restarting teaches nothing, and the connection is retried as any other.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

# A TLS hello answered within this, on the loopback or a compose network, or nothing is learnt
# about the port (the connection is then retried as any other).
PROBE_TIMEOUT = 2.0
# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH, _EMAIL_MISMATCH, _IP_ADDRESS_MISMATCH
_NAME_MISMATCH = (62, 63, 64)
_OUT_OF_DATE = (9, 10)  # X509_V_ERR_CERT_NOT_YET_VALID, X509_V_ERR_CERT_HAS_EXPIRED


@dataclass(frozen=True)
class Protocol:
    """How one protocol names what a line about it must name: its CA setting and its schemes."""

    ca_setting: str  # AMQP_CA_FILE
    plain: str  # amqp://
    tls: str  # amqps://


def client_context(ca_file: str = "") -> ssl.SSLContext:
    """A context that checks the certificate chain against `ca_file`'s CAs (or the system's,
    when empty) and the certificate's names against the host dialled."""
    return ssl.create_default_context(cafile=ca_file or None)


def ca_file_problem(path: str) -> str | None:
    """Why `path` cannot serve as a CA file (a readable PEM of certificates), or None."""
    try:
        client_context(path)
    except ssl.SSLError:  # an OSError too: first
        return "no PEM certificate in it"
    except FileNotFoundError:
        return "no such file"
    except OSError as error:
        return error.strerror or str(error)
    return None


def causes(error: BaseException) -> Iterator[BaseException]:
    """`error` and every error wrapped in it: pika wraps its transport's in two layers (and a
    failed connection workflow holds one per address tried), redis-py keeps the socket's as the
    context of its own."""
    stack, seen = [error], set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        wrapped = [
            getattr(current, "exception", None),
            *(getattr(current, "exceptions", None) or ()),
            current.__cause__,
            current.__context__,
        ]
        stack.extend(inner for inner in wrapped if isinstance(inner, BaseException))


def refusal(
    error: BaseException, host: str, port: int, protocol: Protocol, *, tls: bool, cut: bool
) -> str | None:
    """What to fix, when connecting to `host`:`port` (over TLS when `tls`) failed with `error`
    in a way no retry mends; None when trying again may help:

    - over TLS, a certificate that does not verify: signed by no CA this process trusts, naming
      another host, expired or not yet valid;
    - over TLS, any other failed handshake, if the port answers a TLS hello with something that
      is not TLS: a plain port (OpenSSL's own reason for it differs from version to version);
    - in clear, a connection `cut` before the protocol began, if the port completes a TLS
      handshake: a TLS port."""
    found = list(causes(error))
    for cause in found:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return _unverified(cause, protocol)
    handshake_failed = any(isinstance(cause, ssl.SSLError) for cause in found)
    if tls and handshake_failed and handshake_answer(host, port) is False:
        return f"it does not speak TLS on this port: use {protocol.plain}, or its TLS port"
    if not tls and cut and handshake_answer(host, port) is True:
        return (
            f"it speaks TLS on this port: use {protocol.tls} (and {protocol.ca_setting} for its CA)"
        )
    return None


def _unverified(error: ssl.SSLCertVerificationError, protocol: Protocol) -> str:
    if error.verify_code in _NAME_MISMATCH:
        return (
            f"its certificate does not name the host dialled ({error.verify_message}): connect "
            "by a name the certificate holds"
        )
    if error.verify_code in _OUT_OF_DATE:
        return (
            f"its certificate is out of date ({error.verify_message}): renew it and restart the "
            "server (in compose, `provision` renews it: `docker compose up -d --force-recreate`)"
        )
    return (
        f"its certificate is not signed by a CA this process trusts ({error.verify_message}): "
        f"set {protocol.ca_setting} to the CA that signed it"
    )


def handshake_answer(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool | None:
    """What the server at `host`:`port` answers a TLS hello: True if it completes a handshake
    (trusting any certificate: this only asks which protocol the port speaks, and sends nothing
    after it), False if it answers with something else (a plain port), None if nothing was
    learnt (no connection, no answer in time)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        raw = socket.create_connection((host, port), timeout)
    except OSError:
        return None
    try:
        with context.wrap_socket(raw, server_hostname=host):
            return True
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
        return None  # it hung up
    except ssl.SSLError as error:
        return "ALERT" in (error.reason or "")  # a TLS server refusing us, or no TLS at all
    except OSError:  # reset, timeout: the server hung up or did not answer
        return None
    finally:
        raw.close()
