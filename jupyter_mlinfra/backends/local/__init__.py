"""The embedded local backend: kernels and job ranks as processes on this machine."""

from .backend import LocalBackend

__all__ = ["LocalBackend"]
