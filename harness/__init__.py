"""Running the pipeline as processes against a real broker, for the tests and the benchmark.

`broker` (a vhost of one's own, rabbitmqctl), `processes` (a started process and its log
records), `pipeline` (first -> stages -> last under a fault, checked for loss), `private_broker`
(a RabbitMQ node of one's own, to stop and restart), `docker_broker` (a throwaway broker where
the machine has only Docker). It imports the runtime (`common`), never the other way round.
"""
