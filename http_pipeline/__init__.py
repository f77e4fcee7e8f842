"""The same pipeline with HTTP calls between the services instead of queues, to compare the two.

`python -m http_pipeline.first` POSTs `["seq-N"]` messages to service_a; each stage
(`python -m http_pipeline.service`) runs the broker pipeline's `service.work.Stage` on a message,
then POSTs the result to the next stage and answers its caller only once that one answered:
one synchronous chain, first -> service_a -> service_b -> service_c -> last
(`python -m http_pipeline.last`, which writes the same `completed` / `duplicate` records as the
broker pipeline's `last`). Every server is gunicorn's threaded worker; every call goes through a
pooled client with a deadline, retries with jittered back-off and the message id as its
idempotency key. It ships in its own image (Dockerfile.http) with its own requirements
(requirements-http.txt); the broker pipeline never imports it.
"""
