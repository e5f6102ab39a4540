"""Where the built control plane lies: ``build.sh``'s output folder, built on first use.

``build.sh`` is the one place that knows the versions and the cache folder; asking it costs a
few milliseconds once everything is built (it prints the folder and builds nothing)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

BUILD_SCRIPT = Path(__file__).with_name("build.sh")


@dataclass(frozen=True)
class Built:
    """``build.sh``'s folder: ``bin/`` (every binary) and ``manifests/`` (release manifests)."""

    root: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def binary(self, name: str) -> str:
        return str(self.bin / name)

    def manifest(self, name: str) -> Path:
        return self.root / "manifests" / f"{name}.yaml"

    @property
    def versions(self) -> dict[str, str]:
        """Component → version, e.g. ``{"kubernetes": "v1.37.2", "kueue": "v0.17.0", ...}``."""
        loaded: dict[str, str] = json.loads((self.root / "versions.json").read_text())
        return loaded


@cache
def built() -> Built:
    """Build what is missing (minutes, once per set of versions) and return the folder.

    The build's progress goes to this process's stderr, so a first test session shows it."""
    done = subprocess.run(["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT} failed (exit code {done.returncode}); see its output")
    return Built(Path(done.stdout.strip().splitlines()[-1]))
