"""Which TLS failures end a process and with what line (`common.tls.refusal`): the certificate
cases, told apart by OpenSSL's verify code, found however deep the client library wraps them.
The cases that ask the port what it speaks run against real servers in
tests/integration/test_tls.py."""

from __future__ import annotations

import ssl

import pika.exceptions
import pytest
from pika.adapters.utils.connection_workflow import (
    AMQPConnectionWorkflowFailed,
    AMQPConnectorSocketConnectError,
    AMQPConnectorTransportSetupError,
)

from common.tls import Protocol, causes, refusal

AMQP = Protocol("AMQP_CA_FILE", "amqp://", "amqps://")


def unverified(code: int, message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, f"certificate verify failed: {message}")
    error.verify_code, error.verify_message = code, message
    return error


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (19, "not signed by a CA this process trusts (why): set AMQP_CA_FILE"),
        (20, "not signed by a CA this process trusts"),
        (62, "does not name the host dialled (why): connect by a name the certificate holds"),
        (64, "does not name the host dialled"),
        (10, "is out of date (why): renew it and restart the server"),
        (9, "is out of date"),
    ],
)
def test_a_certificate_that_does_not_verify_says_why(code: int, words: str) -> None:
    assert words in str(refusal(unverified(code, "why"), "h", 1, AMQP, tls=True, cut=False))


def test_the_certificate_failure_is_found_among_every_address_tried() -> None:
    """`localhost` may resolve to ::1 and 127.0.0.1: the workflow holds one failure each, and
    the last may be a refused connection that hides the certificate's on the first."""
    failed = AMQPConnectionWorkflowFailed(
        [
            AMQPConnectorTransportSetupError(unverified(62, "Hostname mismatch")),
            AMQPConnectorSocketConnectError(ConnectionRefusedError(111, "refused")),
        ]
    )
    assert "does not name the host" in str(refusal(failed, "h", 1, AMQP, tls=True, cut=False))
    assert len(list(causes(failed))) == 5


def test_an_outage_is_no_refusal_and_asks_no_port() -> None:
    """Nothing TLS in it, and no cut in clear: retried, without a probe (the port 1 would
    refuse one)."""
    lost = pika.exceptions.AMQPConnectionError(ConnectionRefusedError(111, "refused"))
    assert refusal(lost, "127.0.0.1", 1, AMQP, tls=False, cut=False) is None
    assert refusal(lost, "127.0.0.1", 1, AMQP, tls=True, cut=False) is None
