"""Queued distributed jobs: the spec, admission, the store and the service."""
