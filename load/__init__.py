"""A bounded load test of the webhook: `python -m load.run` (`make load`); see `load.run`."""
