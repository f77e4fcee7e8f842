"""What a pipeline stage does to a message: a little (simulated) work, then its stamp.

`FAIL_ON_SEQ=N` is a test hook: the stage raises on message `seq-N`, as a bug would, so the
retry-then-dead-letter path can be seen and tested.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from common.messages import Message
from common.settings import Env, SettingsError


@dataclass(frozen=True)
class WorkSettings:
    stage: str
    wait_min: float
    wait_max: float
    fail_on_seq: int = 0

    @classmethod
    def from_env(cls, env: Env, stage: str) -> WorkSettings:
        wait_min = env.number("RANDOM_WAIT_MIN", 0.0, minimum=0.0, maximum=3600.0)
        wait_max = env.number("RANDOM_WAIT_MAX", wait_min, minimum=0.0, maximum=3600.0)
        if wait_max < wait_min:
            raise SettingsError(
                "RANDOM_WAIT_MAX", str(wait_max), f"at least RANDOM_WAIT_MIN ({wait_min:g})"
            )
        fail_on_seq = env.integer("FAIL_ON_SEQ", 0, minimum=0, maximum=10**18)
        return cls(stage, wait_min, wait_max, fail_on_seq)


class Stage:
    """Appends the stage's name to the history and records when it handled the message."""

    def __init__(self, settings: WorkSettings) -> None:
        self._settings = settings

    def __call__(self, message: Message) -> Message:
        if message.seq == self._settings.fail_on_seq:
            raise RuntimeError(f"simulated failure on seq-{message.seq} (FAIL_ON_SEQ)")
        if self._settings.wait_max > 0:
            time.sleep(random.uniform(self._settings.wait_min, self._settings.wait_max))
        return message.stamped(self._settings.stage, time.time())
