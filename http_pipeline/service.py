"""`python -m http_pipeline.service`: one stage (STAGE) as an HTTP service calling NEXT_URL.

For each message it is sent: the broker pipeline's stage work (`service.work.Stage`: wait, append
the stage's name, stamp the time), then a call to the next stage, and only once that one said
yes, its own answer. A message it has passed on before is not worked on again.
"""

from __future__ import annotations

import logging
import time

from common.main import run
from common.messages import Message
from common.settings import Env
from common.topology import STAGES, following_queue
from http_pipeline.app import MessagesApp, Reply
from http_pipeline.client import NextHop
from http_pipeline.keys import Claim, IdempotencyKeys
from http_pipeline.server import serve
from http_pipeline.settings import ServerSettings, next_url
from service.work import Stage, WorkSettings

log = logging.getLogger("http")


class StageHandler:
    def __init__(self, stage: Stage, next_hop: NextHop, keys: IdempotencyKeys) -> None:
        self._stage = stage
        self._next = next_hop
        self._keys = keys

    def __call__(self, message: Message, deadline: float) -> Reply:
        claim = self._keys.claim(message.message_id)
        if claim is Claim.DONE:
            return Reply(200, {"status": "duplicate"})
        if claim is Claim.IN_PROGRESS:
            return Reply.error(409, "this message is in progress here: ask again shortly")
        done = False
        try:
            if time.time() >= deadline:
                return Reply.error(504, "the deadline passed before the work began")
            outcome = self._next.deliver(self._stage(message), deadline)
            done = outcome.ok
        finally:
            self._keys.finish(message.message_id, done=done)
        if done:
            return Reply(200, {"status": "done"})
        if outcome.status is None:  # this hop failed; an error answer was logged where it arose
            log.warning(
                "could not pass the message on",
                extra={"seq": message.history[0], "next": self._next.url, "reason": outcome.reason},
            )
        return Reply.error(502, f"could not pass it on to {self._next.url}: {outcome.reason}")

    def close(self) -> None:
        self._next.close()


def main(env: Env) -> int:
    name = env.choice("STAGE", STAGES[0], STAGES)
    settings = ServerSettings.from_env(env)
    url = next_url(env, f"the stage after {name} ({following_queue(name)})")
    work = WorkSettings.from_env(env, name)

    def load() -> MessagesApp:
        handler = StageHandler(Stage(work), NextHop(url, settings.workers), IdempotencyKeys())
        return MessagesApp(name, handler, settings.timeout)

    serve(name, env, settings, load, next=url)
    return 0


if __name__ == "__main__":
    run(main)
