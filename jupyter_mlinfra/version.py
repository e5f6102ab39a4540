"""The package's version, for the modules that report it (the server's ``GET whoami``... and
the agent's status): here rather than in ``__init__``, which imports the extension's app."""

from __future__ import annotations

try:
    from ._version import __version__
except ImportError:  # a source checkout that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
