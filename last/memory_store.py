"""Without STORE_URL: the ids this process completed, in memory.

De-duplication then holds within one process only, and nothing outlives it: no line can be
left unwritten for another `last` to find, so there is nothing to mark.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future

from last.store import Answer, Verdict

# Ids remembered: a redelivery arrives within seconds or minutes, far inside.
REMEMBERED_IDS = 1_000_000


class MemoryStore:
    """The ids this process completed, the oldest forgotten past `remembered`."""

    def __init__(self, remembered: int = REMEMBERED_IDS) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._remembered = remembered
        self._lock = threading.Lock()

    def add(self, key: str, record: str, log_line: Callable[[Answer], None]) -> Future[None]:
        with self._lock:
            kept = key not in self._ids
            if kept:
                self._ids[key] = None
                if len(self._ids) > self._remembered:
                    self._ids.popitem(last=False)
        settled: Future[None] = Future()
        try:
            log_line(Answer(Verdict.COMPLETED if kept else Verdict.DUPLICATE, record))
        except Exception as error:  # the message is not settled: it goes back to the queue
            settled.set_exception(error)
        else:
            settled.set_result(None)
        return settled
