"""Kueue's own CRDs, of the release the examples target (v0.17), read from its Go module, to
check example objects against what a real Kueue serves: the fixture's copies
(``../shared/kubernetes/crds``) are of the v1beta1 era. The module comes through the Go module
proxy once and is cached (``go env GOMODCACHE``), as for building the control plane."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .optional import need

KUEUE_MODULE = "sigs.k8s.io/kueue@v0.17.0"


@cache
def kueue_module() -> Path:
    """Where the Kueue module lies (downloaded into the module cache when it is not there)."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    need(os.path.exists(go), f"Go is not installed: {KUEUE_MODULE}'s CRDs come from its module")
    done = subprocess.run(
        [go, "mod", "download", "-json", KUEUE_MODULE],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tempfile.gettempdir(),  # outside any module
        check=False,
    )
    info = json.loads(done.stdout or "{}")
    need("Dir" in info, f"go mod download {KUEUE_MODULE}: {info.get('Error') or done.stderr}")
    return Path(info["Dir"])


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """The openAPIV3Schema of every served version of every Kueue CRD, by (apiVersion, kind)."""
    found = {}
    for path in sorted((kueue_module() / "config/components/crd/bases").glob("*.yaml")):
        crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                found[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return found


def _unknown(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    """Fields the schema does not have (the API server prunes them silently, or refuses
    them with strict field validation, as ``kubectl apply`` asks)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(value, dict):
        known = schema.get("properties")
        if known is None:
            extra = schema.get("additionalProperties")
            if not isinstance(extra, dict):
                return []
            return [p for k, v in value.items() for p in _unknown(v, extra, f"{where}.{k}")]
        found = []
        for key, item in value.items():
            if key not in known:
                found.append(f"{where}.{key}".lstrip("."))
            else:
                found += _unknown(item, known[key], f"{where}.{key}")
        return found
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [
            p for i, v in enumerate(value) for p in _unknown(v, schema["items"], f"{where}[{i}]")
        ]
    return []


def _pattern(validator: Any, pattern: str, value: Any, schema: dict[str, Any]) -> Any:
    """``pattern`` as Go's RE2 reads it: inline flags such as ``^(?i)`` may come anywhere."""
    if not isinstance(value, str):
        return
    flags = re.IGNORECASE if "(?i)" in pattern else 0
    if not re.search(pattern.replace("(?i)", ""), value, flags):
        yield jsonschema.ValidationError(f"{value!r} does not match {pattern!r}")


CrdValidator = jsonschema.validators.extend(jsonschema.Draft7Validator, {"pattern": _pattern})


def problems(obj: dict[str, Any]) -> list[str]:
    """What real Kueue (v0.17) would refuse in ``obj``: no such version or kind, a field its
    CRD lacks, or a value its schema refuses (CEL rules, which the API server also runs, are
    not checked here)."""
    schema = crd_schemas().get((obj.get("apiVersion", ""), obj.get("kind", "")))
    if schema is None:
        return [f"Kueue {KUEUE_MODULE} serves no {obj.get('apiVersion')} {obj.get('kind')}"]
    found = [f"unknown field {path}" for path in _unknown(obj, schema, "")]
    validator = CrdValidator(schema)
    for error in validator.iter_errors(obj):
        found.append(f"{'.'.join(str(p) for p in error.absolute_path)}: {error.message}")
    return found
