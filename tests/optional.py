"""Optional components: skip on a laptop that lacks them, fail in CI.

`.ci/run` sets ``MLINFRA_REQUIRE_ALL=1`` so that a missing chromium, PyTorch or
configurable-http-proxy can never turn a CI run green by skipping what it was meant to test.
"""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_ALL = os.environ.get("MLINFRA_REQUIRE_ALL") == "1"


def need(available: bool, reason: str) -> None:
    """Skip the calling test with ``reason`` unless the component is available (fail in CI)."""
    if available:
        return
    if REQUIRE_ALL:
        pytest.fail(f"required in CI (MLINFRA_REQUIRE_ALL=1): {reason}", pytrace=False)
    pytest.skip(reason)


def chromium_path() -> str:
    """Debian's chromium, which browser tests drive through Playwright (never a download)."""
    path = os.environ.get("MLINFRA_CHROMIUM") or shutil.which("chromium") or ""
    need(bool(path), "chromium is not installed (Debian: apt-get install chromium)")
    return path
