"""Outbound jobs: the outbox, its relay to rq, the job functions and the in-process drainer."""
