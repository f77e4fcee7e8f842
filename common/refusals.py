"""The broker's refusals: what ends a process at once, with one line saying what to fix.

A login or virtual host refused (ACCESS_REFUSED, NOT_ALLOWED) while connecting, a TLS handshake
that cannot succeed (a certificate no trusted CA signed or that names another host, TLS against
a plain port, a plain client on a TLS port: `common.tls`), a queue declared with other arguments
(PRECONDITION_FAILED) or access refused while setting up the channel: trying again will not
help. A connection cut during the handshake is not a refusal, whatever pika guesses
(`ProbableAuthenticationError`): it is retried like any outage.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pika.exceptions

from common.retry import describe
from common.tls import Protocol
from common.tls import refusal as tls_failure

AMQP = Protocol(ca_setting="AMQP_CA_FILE", plain="amqp://", tls="amqps://")
PRECONDITION_FAILED = 406
REFUSED = (403, 405)  # ACCESS_REFUSED, RESOURCE_LOCKED: trying again will not help
LOGIN_REFUSALS = (403, 530)  # ACCESS_REFUSED (user, password), NOT_ALLOWED (virtual host)
# pika turns the broker's Connection.Close during the handshake into a "Probable..." error that
# carries the broker's reply as text; a cut stream carries something else (StreamLostError).
_BROKER_REPLY = re.compile(r"ConnectionClosedByBroker: \((\d+)\) '(.*)'", re.S)


class BrokerError(RuntimeError):
    """The broker cannot be used: unreachable for too long, refused us, or its queues clash."""


class BrokerUnreachable(BrokerError):
    """No node of AMQP_URL could be reached for CONNECT_TIMEOUT: the one refusal that is about
    where the broker runs, which the entry point may add a hint to (`common.main`)."""


def broker_refusal(error: BaseException | str) -> tuple[int, str] | None:
    """The broker's reply code and text, if it refused us during the handshake (not a cut)."""
    if not isinstance(
        error,
        pika.exceptions.ProbableAuthenticationError | pika.exceptions.ProbableAccessDeniedError,
    ):
        return None
    match = _BROKER_REPLY.search(str(error.args[0]) if error.args else "")
    if match is None or int(match.group(1)) not in LOGIN_REFUSALS:
        return None
    return int(match.group(1)), match.group(2)


def open_refusal(error: BaseException | str, node: str) -> BrokerError | None:
    """Why connecting to `node` (its URL, password hidden) failed for good, or None if it is
    worth trying again."""
    reason = tls_refusal(error, node) if isinstance(error, BaseException) else None
    if reason:
        return BrokerError(f"cannot connect to the broker at {node}: {reason}")
    refusal = broker_refusal(error)
    if isinstance(error, pika.exceptions.AuthenticationError) or (
        refusal and refusal[0] == LOGIN_REFUSALS[0]
    ):
        return BrokerError(
            f"the broker at {node} refused the login: check the user and password in AMQP_URL "
            f"({refusal[1] if refusal else describe(error)})"
        )
    if refusal:
        return BrokerError(
            f"the broker at {node} refused access to the virtual host: check that it exists "
            f"and that the user may use it ({refusal[1]})"
        )
    return None


def tls_refusal(error: BaseException, node: str) -> str | None:
    """What to fix, if `error` is a TLS failure connecting to `node` that no retry mends; a
    plain connection cut before AMQP began (pika: `IncompatibleProtocolError`) may have been
    made to a TLS port (`common.tls.refusal`)."""
    url = urlsplit(node)
    tls = url.scheme == "amqps"
    port = url.port or (5671 if tls else 5672)
    cut = isinstance(error, pika.exceptions.IncompatibleProtocolError)
    return tls_failure(error, url.hostname or "", port, AMQP, tls=tls, cut=cut)


def setup_refusal(reason: BaseException) -> BrokerError | None:
    """Why the broker closed a channel that was being set up for good, or None."""
    if not isinstance(reason, pika.exceptions.ChannelClosedByBroker):
        return None
    if reason.reply_code == PRECONDITION_FAILED:
        return BrokerError(
            f"a queue exists with other arguments than configured ({reason.reply_text}); "
            "delete it (rabbitmqctl delete_queue NAME) or set QUEUE_TYPE / DELIVERY_LIMIT to "
            "match"
        )
    if reason.reply_code in REFUSED:
        return BrokerError(f"the broker refused to set up the queues: {reason.reply_text}")
    return None
