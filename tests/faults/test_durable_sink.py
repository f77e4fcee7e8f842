"""`last` scaled and replaced with its durable store: every id logged `completed`, twice only in
the one window the store leaves.

Without the store each `last` remembers ids in memory, so that a replacement, or another
replica, logs again what a killed one had logged but not yet acked; with it, `completed` means
"this process's write stored the record" (or recovered the line of a record whose `last` died
before writing it), once per id across every replica, but for a kill after a batch's lines and
before the store marked them written: at most PREFETCH lines twice per kill (`last.store`).
The two `last` replicas start on a full queue, so that each one is busy, holding records logged
but not yet acked, when it is killed. tests/faults/test_store_kills.py measures it over 20 kills.
"""

from __future__ import annotations

from common.topology import SINK_QUEUE, STAGES
from harness.pipeline import PipelineRun
from harness.processes import wait_for
from harness.store import StoreKeys

COUNT = 2000
PREFETCH = 100  # the consumer's default: the most lines one kill can give twice
KILLS = 2
SOME_WORK = {"RANDOM_WAIT_MIN": 0.001, "RANDOM_WAIT_MAX": 0.01}


def test_sigkill_each_of_two_lasts_in_turn(start, vhost, store: StoreKeys) -> None:
    run = PipelineRun(start, vhost, COUNT, store=store)
    for queue in STAGES:
        run.start_service(queue, **SOME_WORK)
    run.start_first()
    wait_for(lambda: vhost.depth(SINK_QUEUE) == COUNT, 60, f"{COUNT} messages for last")
    run.start_last()  # `--scale last=2`: two replicas on one queue, one store
    run.start_last()
    run.wait_for_consumers()  # each victim is killed while it consumes
    for victim, fraction in zip(list(run.lasts), (0.1, 0.4)[:KILLS], strict=True):
        run.wait_until_completed(fraction, timeout=60)
        run.kill(victim)
        victim.wait(10)
        run.start_last()
    run.wait_for_consumers()  # the replacements are up
    row = run.finish("`last` x2 with its store (Redis), each SIGKILLed in turn and replaced")
    assert row.duplicates_logged <= KILLS * PREFETCH
    assert {r["broker_message_id"] for r in run.logged()} == set(store.records())  # no line lost
