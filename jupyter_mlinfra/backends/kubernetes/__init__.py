"""The Kubernetes backend: kernels as pods, jobs as Jobs/JobSets, queued by Kueue if present."""
