"""The offline report on a run: `last`'s records in, counts, order, latency and a figure out."""
