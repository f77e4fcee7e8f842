"""Consuming with manual acks: worker threads do the work, one I/O thread talks to the broker.

The package along its seams, each module one job:
- `coordinator`: the I/O thread's side, `Consumer`: deliveries in, outcomes settled, the drain;
- `workers`: the worker threads and the hand-back of their outcomes to the I/O thread;
- `processing`: a worker's job, decoding and checking a delivery and running the handler;
- `acks`: settling one channel's deliveries, acks gathered into `multiple` frames;
- `dead_letters`: the dead-letter copy's properties and their size bounds;
- `ordering`, `unordered`, `lanes`, `policies`: the ordering policy (ORDERING), which decides
  when a delivery starts, what a failure leads to and what a stop does;
- `drain`: the cancel that keeps deliveries in flight, and the `stopped` counts;
- `events`: what happens to each message, told to observers (progress, metrics, traces);
- `settings`: what the environment tells a consumer.
"""

from common.consumer.coordinator import Consumer
from common.consumer.outcomes import Handler, Result
from common.consumer.settings import ConsumerSettings

__all__ = ["Consumer", "ConsumerSettings", "Handler", "Result"]
