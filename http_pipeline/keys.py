"""Idempotency keys: which message ids a stage has handled, so a repeated call does no work twice.

A caller repeats a call when it got no answer (a timeout, a broken connection, a restart on the
other side), although the first call may have done its work or may still be doing it. The key is
the message id. A call whose key is new claims it; a call whose key is claimed gets `IN_PROGRESS`
(the caller tries again a little later) or `DONE` (the caller is told it went through, and
nothing is done again). A claim whose work failed is released, so a later call can try again.

The keys live in the process's memory: a stage that crashes forgets them, and a repeated call
then does the work once more; the next stage, which still remembers, stops it there.
"""

from __future__ import annotations

import enum
import threading
from collections import OrderedDict

# Ids remembered per stage: a repeated call comes within its caller's deadline (30 s by
# default), by when even 1,000 messages a second have used up 30,000 of them.
REMEMBERED_KEYS = 100_000


class Claim(enum.Enum):
    NEW = "new"  # the caller's to work on
    IN_PROGRESS = "in progress"  # another call with this key is being worked on
    DONE = "done"  # handled before: do nothing, say it went through


class IdempotencyKeys:
    def __init__(self, remembered: int = REMEMBERED_KEYS) -> None:
        self._remembered = remembered
        self._done: OrderedDict[str, None] = OrderedDict()
        self._in_progress: set[str] = set()
        self._lock = threading.Lock()

    def claim(self, key: str) -> Claim:
        with self._lock:
            if key in self._done:
                return Claim.DONE
            if key in self._in_progress:
                return Claim.IN_PROGRESS
            self._in_progress.add(key)
            return Claim.NEW

    def finish(self, key: str, *, done: bool) -> None:
        """End a claim: remember the key if its work went through, forget it if not."""
        with self._lock:
            self._in_progress.discard(key)
            if done:
                self._done[key] = None
                if len(self._done) > self._remembered:
                    self._done.popitem(last=False)
