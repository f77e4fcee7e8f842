"""A worker's job: decode and check one delivery, run the handler, name the outcome.

Outcomes of the handler (or of the Future it returns: a handler that waits on something outside,
such as `last` on its store, hands the wait to whoever resolves the Future, and the delivery is
settled when it resolves, with no worker thread held):
- returns a Message: the output, encoded and routed here, for the I/O thread to publish;
- returns None: the message ends here;
- raises InvalidMessage, or the message does not decode, or its history did not come through
  the stages before this queue in order (`common.topology.stages_before`), or it was sent by
  another user than the one this stage accepts (`common.consumer.senders`): dead-letter it;
- raises anything else: a failure that may pass on another try (the ordering policy decides).
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass

from common.consumer.outcomes import (
    DeadLetter,
    Delivery,
    Done,
    Failed,
    Forward,
    Handler,
    Outcome,
    Result,
)
from common.consumer.senders import sender_refusal
from common.consumer.settings import ConsumerSettings
from common.frames import undecodable_reason
from common.messages import InvalidMessage, Message
from common.retry import describe
from common.settings import BrokerSettings
from common.topology import route, stages_before


@dataclass(frozen=True)
class Processor:
    """Turns a delivery of `settings.queue` into its outcome with `handler`; outputs go to
    `next_queue` ("": the handler is the sink, and its result must be None). Safe on any
    thread."""

    handler: Handler
    broker: BrokerSettings
    settings: ConsumerSettings
    next_queue: str = ""

    def process(self, delivery: Delivery) -> Outcome | Future[Outcome]:
        queue = self.settings.queue
        refusal = sender_refusal(delivery.properties, queue, self.settings.accept_from)
        if refusal is None:
            refusal = undecodable_reason(delivery.properties.headers)
        if refusal is not None:
            return DeadLetter(refusal)
        try:
            message = Message.decode(delivery.body, delivery.properties, self.broker.max_body_bytes)
            stages = stages_before(queue)
            if stages is not None:
                message.require_stages(stages, queue)
            output = self.handler(message)
            if not isinstance(output, Future):
                return self._outcome(output)
        except Exception as error:
            return _failure(error)
        outcome: Future[Outcome] = Future()
        output.add_done_callback(lambda done: outcome.set_result(self._settled(done)))
        return outcome

    def _settled(self, done: Future[Result]) -> Outcome:
        if done.cancelled():
            return Failed("the handler's answer was cancelled")
        try:
            return self._outcome(done.result())
        except Exception as error:
            return _failure(error)

    def _outcome(self, output: Result) -> Outcome:
        if output is None:
            return Done()
        routing_key = route(self.next_queue, output.partition_key, self.broker)
        return Forward(routing_key, *output.encode())


def _failure(error: BaseException) -> Outcome:
    """A bad message is dead-lettered at once; anything else may work on another try."""
    if isinstance(error, InvalidMessage):
        return DeadLetter(str(error))
    return Failed(describe(error))
