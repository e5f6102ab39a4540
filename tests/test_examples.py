"""The shipped examples load: an admin copying them gets a working catalog, not an error."""

from __future__ import annotations

from pathlib import Path

from traitlets.config.loader import PyFileConfigLoader

from jupyter_mlinfra.app import MLInfraApp
from jupyter_mlinfra.backends.local import LocalBackend
from jupyter_mlinfra.capacity import Machine
from jupyter_mlinfra.identity import Identity

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_example_server_config_builds_catalog_and_quotas() -> None:
    config = PyFileConfigLoader("jupyter_server_config.py", path=str(EXAMPLES)).load_config()
    app = MLInfraApp(config=config)
    catalog = app.make_catalog(LocalBackend(machine=Machine("box", cpus=64, memory_bytes=2**40)))
    assert [f.name for f in catalog.flavors] == ["cpu", "a100x1", "a100x4"]
    assert [e.name for e in catalog.environments] == ["pytorch", "jax"]
    assert catalog.default_environment == "pytorch"
    student = Identity("carol", frozenset({"students"}))
    assert [f.name for f in catalog.for_identity(student).flavors] == ["cpu", "a100x1"]
    quotas = app.make_quotas()
    assert quotas.for_identity(student).max_gpus == 0
    assert quotas.for_identity(Identity("bob", frozenset({"research"}))).max_gpus == 4
