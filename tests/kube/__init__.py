"""The cluster fixture: an in-repo test API server that speaks the Kubernetes REST API and runs
pods as local processes (see README.md here)."""
