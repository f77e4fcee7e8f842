"""`python -m compare` (`make compare`): the broker pipeline and the HTTP pipeline through the
same scenarios, one after another, written up in docs/http-vs-broker.md with a figure."""
