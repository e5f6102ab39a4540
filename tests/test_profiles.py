"""KubeSpawner profiles generated from the catalog, for Zero to JupyterHub: their content, the
per-user filtering the generated hub config does, and the example kept in sync."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml
from traitlets.config import Config

from jupyter_mlinfra.catalog import build_catalog
from jupyter_mlinfra.profiles import kubespawner_profile

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_a_flavor_becomes_a_profile_with_its_resources_and_placement() -> None:
    catalog = build_catalog(
        [
            {
                "name": "h100x2-spot",
                "display_name": "2 × H100 (spot)",
                "description": "cheap, may be reclaimed",
                "accelerator": {"kind": "nvidia.com/gpu", "model": "H100", "count": 2},
                "cpu": 16,
                "memory": "128Gi",
                "capacity_type": "spot",
                "node_selector": {"cloud.google.com/gke-spot": "true"},
                "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
            }
        ],
        [{"name": "python"}],
        "",
        "",
    )
    assert kubespawner_profile(catalog.flavors[0], default=True) == {
        "display_name": "2 × H100 (spot)",
        "slug": "h100x2-spot",
        "description": "cheap, may be reclaimed",
        "default": True,
        "kubespawner_override": {
            "cpu_guarantee": 16.0,
            "cpu_limit": 16.0,
            "mem_guarantee": 128 * 2**30,
            "mem_limit": 128 * 2**30,
            "extra_resource_guarantees": {"nvidia.com/gpu": 2},
            "extra_resource_limits": {"nvidia.com/gpu": 2},
            "node_selector": {"cloud.google.com/gke-spot": "true"},
            "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
        },
    }


def generated(tmp_path: Path, config: str = "") -> str:
    """`jupyter mlinfra profiles` for the example catalog, with no other config around than
    ``config`` (a jupyter_server_config.py)."""
    empty = tmp_path / "no-config"
    empty.mkdir()
    (empty / "jupyter_server_config.py").write_text(config)
    result = subprocess.run(
        [sys.executable, "-m", "jupyter_mlinfra.cli", "profiles", "--catalog",
         str(EXAMPLES / "catalog.yaml")],
        capture_output=True, text=True, check=True, timeout=60,
        env={**os.environ, "JUPYTER_CONFIG_DIR": str(empty)},
    )  # fmt: skip
    return result.stdout


def test_profiles_of_a_catalog_file_on_a_cluster_with_no_catalog_configured(
    tmp_path: Path,
) -> None:
    """The cluster's backend reads its flavors from the catalog: the one given, not the
    (missing) configured one."""
    config = 'c.MLInfraApp.backend = "kubernetes"\n'
    assert generated(tmp_path, config) == (EXAMPLES / "jupyterhub" / "profiles.yaml").read_text()


def test_the_example_profiles_are_generated_from_the_example_catalog(tmp_path: Path) -> None:
    committed = (EXAMPLES / "jupyterhub" / "profiles.yaml").read_text()
    assert generated(tmp_path) == committed, (
        "regenerate: jupyter mlinfra profiles --catalog examples/catalog.yaml "
        "> examples/jupyterhub/profiles.yaml"
    )


def _user(name: str, groups: list[str], admin: bool = False) -> Any:
    return SimpleNamespace(
        user=SimpleNamespace(
            name=name, admin=admin, groups=[SimpleNamespace(name=g) for g in groups]
        )
    )


def test_the_hub_offers_each_user_the_flavors_they_may_use(tmp_path: Path) -> None:
    values = yaml.safe_load(generated(tmp_path))
    code = values["hub"]["extraConfig"]["mlinfra-profiles"]
    c = Config()
    exec(compile(code, "mlinfra-profiles", "exec"), {"c": c})  # as the z2jh hub runs it
    profiles = c.KubeSpawner.profile_list

    def offered(spawner: Any) -> list[str]:
        return [p["slug"] for p in profiles(spawner)]

    assert offered(_user("alice", ["research"])) == ["cpu", "a100x1", "a100x4"]
    assert offered(_user("bob", ["students"])) == ["cpu", "a100x1"]
    assert offered(_user("carol", [], admin=True)) == ["cpu", "a100x1", "a100x4"]
    assert [p.get("default", False) for p in profiles(_user("bob", []))] == [True, False]
