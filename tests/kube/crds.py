"""The JobSet and Kueue CustomResourceDefinitions, read from the verbatim copies in
``../shared/kubernetes/crds`` (beside the repository, as in CI; ``MLINFRA_CRDS`` overrides)."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import yaml

from .resources import ResourceType, from_crd

CRD_FOLDER = Path(
    os.environ.get(
        "MLINFRA_CRDS",
        Path(__file__).resolve().parents[2] / ".." / "shared" / "kubernetes" / "crds",
    )
)

#: what install(name) adds: CRD files (by plural) and the version served
ADDONS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "jobset": ("jobset.x-k8s.io", ("jobsets",), "v1alpha2"),
    "kueue": (
        "kueue.x-k8s.io",
        ("resourceflavors", "clusterqueues", "localqueues", "workloads", "workloadpriorityclasses"),
        "v1beta1",
    ),
}


def available() -> bool:
    """Whether the CRD copies are there (tests that need them skip, or fail in CI, if not)."""
    return all(
        (CRD_FOLDER / f"{group}_{plural}.yaml").is_file()
        for group, plurals, _ in ADDONS.values()
        for plural in plurals
    )


@functools.cache
def _load(path: Path) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open() as handle:
        return yaml.load(handle, Loader=loader)  # type: ignore[no-any-return]


def addon_types(name: str) -> list[ResourceType]:
    """The served types of an add-on; FileNotFoundError naming the folder when absent."""
    group, plurals, version = ADDONS[name]
    types = []
    for plural in plurals:
        path = CRD_FOLDER / f"{group}_{plural}.yaml"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: the {name} CRDs are read from ../shared/kubernetes/crds"
            )
        types.append(from_crd(_load(path), version))
    return types
