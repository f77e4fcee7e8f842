"""TLS for the clients: verify the server's certificate and host name, and say plainly why not.

A client trusts the CAs of one PEM file (AMQP_CA_FILE, STORE_CA_FILE: in compose, the
deployment's own authority, `provision.certificates`), or the system's when none is named, and
checks that the certificate names the host it dialled. Python's default context does both.

What goes wrong with TLS is never worth retrying, so each case gets one line that says what to
fix (`verification_failure`, and `common.refusals` for the broker, `last.redis_store` for the
store): a certificate no trusted CA signed, one that names another host, a TLS client on a
plain port, and a plain client on a TLS port. The last one looks like any cut connection (the
server hangs up on bytes it cannot read), so `speaks_tls` asks the server, once, whether it
answers a TLS hello.
"""

from __future__ import annotations

import socket
import ssl

# A TLS hello answered within this, on the loopback or a compose network, or the port is not
# taken for a TLS one (the connection is then retried as any other).
PROBE_TIMEOUT = 2.0
_NOT_TLS = "WRONG_VERSION_NUMBER"  # OpenSSL's reason when the server's answer is no TLS record
# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH, _EMAIL_MISMATCH, _IP_ADDRESS_MISMATCH
_NAME_MISMATCH = (62, 63, 64)


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


def innermost(error: BaseException) -> BaseException:
    """The root of a chain of wrapped errors (pika wraps its transport's in two layers, redis-py
    keeps the socket's as the context of its own)."""
    seen: set[int] = set()
    while id(error) not in seen:
        seen.add(id(error))
        inner = (
            getattr(error, "exception", None) or (getattr(error, "exceptions", None) or [None])[-1]
        )
        inner = inner or error.__cause__ or error.__context__
        if not isinstance(inner, BaseException):
            break
        error = inner
    return error


def verification_failure(error: BaseException, ca_setting: str, plain_scheme: str) -> str | None:
    """What to fix, when `error` is a TLS handshake that can never succeed as configured: the
    server's certificate did not verify (`ca_setting` names the CA file), or the server does not
    speak TLS on that port (`plain_scheme` is the URL scheme without TLS); else None."""
    root = innermost(error)
    if isinstance(root, ssl.SSLCertVerificationError):
        if root.verify_code in _NAME_MISMATCH:
            return (
                f"its certificate does not name the host dialled ({root.verify_message}): "
                "connect by a name the certificate holds"
            )
        return (
            f"its certificate is not signed by a CA this process trusts ({root.verify_message}):"
            f" set {ca_setting} to the CA that signed it"
        )
    if isinstance(root, ssl.SSLError) and root.reason == _NOT_TLS:
        return f"it does not speak TLS on this port: use {plain_scheme}, or the server's TLS port"
    return None


def speaks_tls(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether the server at `host`:`port` completes a TLS handshake (trusting any certificate:
    this only asks which protocol the port speaks, and sends nothing after the handshake)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return True
    except (OSError, ValueError):  # ssl.SSLError is an OSError
        return False
