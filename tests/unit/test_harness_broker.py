"""harness.broker: why a broker cannot be used, in the words of the error under pika's wrappers
(the test run's first line when it falls back to a throwaway broker, and `make compare`'s)."""

from __future__ import annotations

import pika.exceptions
from pika.adapters.utils.connection_workflow import AMQPConnectorSocketConnectError

from harness.broker import root_cause


def test_a_refused_socket_under_two_wrappers() -> None:
    refused = ConnectionRefusedError(111, "Connection refused")
    error = pika.exceptions.AMQPConnectionError(AMQPConnectorSocketConnectError(refused))
    assert str(root_cause(error)) == "[Errno 111] Connection refused"


def test_a_broker_refusal_keeps_its_text() -> None:
    text = "ConnectionClosedByBroker: (403) 'ACCESS_REFUSED - Login was refused'"
    error = pika.exceptions.ProbableAuthenticationError(text)
    assert str(root_cause(error)) == text


def test_an_error_with_nothing_inside() -> None:
    error = TimeoutError()
    assert root_cause(error) is error
