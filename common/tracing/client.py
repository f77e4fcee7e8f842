"""CLIENT spans around calls that answer with a Future (`last`'s store write): the span opens in
the caller's context (the worker's, where the delivery's process span is current) and ends when
the Future resolves, on whichever thread resolves it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import TypeVar

from opentelemetry.trace import Span, SpanKind, Tracer

from common.tracing.messaging import fail

T = TypeVar("T")


class ClientSpans:
    def __init__(self, tracer: Tracer, name: str, attributes: Mapping[str, str]) -> None:
        self._tracer = tracer
        self._name = name
        self._attributes = attributes

    def __call__(self, call: Callable[[], Future[T]]) -> Future[T]:
        span = self._tracer.start_span(
            self._name, kind=SpanKind.CLIENT, attributes=self._attributes
        )
        try:
            answer = call()
        except Exception as error:
            _ended(span, error)
            raise
        answer.add_done_callback(lambda done: _ended(span, _error_of(done)))
        return answer


def _error_of(done: Future[object]) -> BaseException | None:
    if done.cancelled():
        return RuntimeError("cancelled")
    return done.exception()


def _ended(span: Span, error: BaseException | None) -> None:
    if error is not None:
        span.record_exception(error)
        fail(span, type(error).__name__, str(error) or type(error).__name__)
    span.end()
