"""A real Kubernetes control plane for the tests, built from upstream Go modules (README.md)."""
