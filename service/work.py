"""What a pipeline stage does to a message: a little (simulated) work, then its stamp."""

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

    @classmethod
    def from_env(cls, env: Env, stage: str) -> WorkSettings:
        wait_min = env.number("RANDOM_WAIT_MIN", 0.0, minimum=0.0, maximum=3600.0)
        wait_max = env.number("RANDOM_WAIT_MAX", wait_min, minimum=0.0, maximum=3600.0)
        if wait_max < wait_min:
            raise SettingsError(
                "RANDOM_WAIT_MAX", str(wait_max), f"at least RANDOM_WAIT_MIN ({wait_min:g})"
            )
        return cls(stage, wait_min, wait_max)


class Stage:
    """Appends the stage's name to the history and records when it handled the message."""

    def __init__(self, settings: WorkSettings) -> None:
        self._settings = settings

    def __call__(self, message: Message) -> Message:
        if self._settings.wait_max > 0:
            time.sleep(random.uniform(self._settings.wait_min, self._settings.wait_max))
        return message.stamped(self._settings.stage, time.time())
