"""Tools people run around the pipeline, never in it: `python -m tools.watch` (the queues, live)
and `python -m tools.report` (what a run did). They read the broker and `last`'s records; the
pipeline's processes never import them, and the image does not ship them."""
