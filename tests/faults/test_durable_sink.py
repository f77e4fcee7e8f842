"""`last` scaled and replaced with its durable store: no id is ever completed twice.

Without the store each `last` remembers ids in memory, so that a replacement, or another
replica, logs again what a killed one had logged but not yet acked; with it, `completed` means
"this process's write stored the record", which happens once per id across every replica.
The two `last` replicas start on a full queue, so that each one is busy, holding records logged
but not yet acked, when it is killed.
"""

from __future__ import annotations

from common.topology import SINK_QUEUE, STAGES
from harness.pipeline import PipelineRun
from harness.processes import wait_for
from harness.store import StoreKeys

COUNT = 2000
SOME_WORK = {"RANDOM_WAIT_MIN": 0.001, "RANDOM_WAIT_MAX": 0.01}


def test_sigkill_each_of_two_lasts_in_turn(start, vhost, store: StoreKeys) -> None:
    run = PipelineRun(start, vhost, COUNT, store=store)
    for queue in STAGES:
        run.start_service(queue, **SOME_WORK)
    run.start_first()
    wait_for(lambda: vhost.depth(SINK_QUEUE) == COUNT, 60, f"{COUNT} messages for last")
    run.start_last()  # `--scale last=2`: two replicas on one queue, one store
    run.start_last()
    for victim, fraction in zip(list(run.lasts), (0.1, 0.4), strict=True):
        run.wait_until_completed(fraction, timeout=60)
        run.kill(victim)
        victim.wait(10)
        run.start_last()
    run.wait_for_consumers()  # the replacements are up
    row = run.finish("`last` x2 with its store (Redis), each SIGKILLed in turn and replaced")
    assert row.duplicates_logged == 0
