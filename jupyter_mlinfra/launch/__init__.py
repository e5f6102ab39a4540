"""What runs inside a job: the rank-environment contract and the in-job entry point."""
