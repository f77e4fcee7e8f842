"""`python -m bench`: the same workload through this project and its contenders, one table.

Never part of `make test`; `make bench` installs requirements-bench.txt and runs it. Every run
gets a virtual host of its own on the broker at AMQP_URL (guest on localhost by default), is
bounded in time, and leaves nothing behind. See docs/benchmarks.md for the figures.
"""
