"""The runtime library of `first`, `service` and `last`, and nothing else: every broker concern
once (settings, logging, connecting, topology, publishing with confirms, consuming with acks)."""
