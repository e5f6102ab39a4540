"""The shipped examples load: an admin copying them gets a working catalog, not an error."""

from __future__ import annotations

import importlib.util
import re
import tempfile
from pathlib import Path

import pytest
import yaml
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from jupyter_mlinfra.app import MLInfraApp
from jupyter_mlinfra.backends.kubernetes.pod_config import KubernetesPods
from jupyter_mlinfra.backends.local import LocalBackend
from jupyter_mlinfra.capacity import Machine
from jupyter_mlinfra.identity import Identity

from .agents import AgentHome
from .lab_server import running_lab
from .optional import need

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_example_server_config_builds_catalog_and_quotas() -> None:
    config = PyFileConfigLoader("jupyter_server_config.py", path=str(EXAMPLES)).load_config()
    app = MLInfraApp(config=config)
    backend = LocalBackend(machine=Machine("box", cpus=64, memory_bytes=2**40))
    catalog = app.mlinfra_settings.catalog(backend.builtin_catalog)
    assert [f.name for f in catalog.flavors] == ["cpu", "a100x1", "a100x4"]
    assert [e.name for e in catalog.environments] == ["pytorch", "jax"]
    assert catalog.default_environment == "pytorch"
    student = Identity("carol", frozenset({"students"}))
    assert [f.name for f in catalog.for_identity(student).flavors] == ["cpu", "a100x1"]
    quotas = app.mlinfra_settings.quotas()
    assert quotas.for_identity(student).max_gpus == 0
    assert quotas.for_identity(Identity("bob", frozenset({"research"}))).max_gpus == 4


def test_distributed_pytorch_notebook_runs_top_to_bottom(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The notebook a new user opens first, executed cell by cell against a real server."""
    need(
        importlib.util.find_spec("torch") is not None,
        "PyTorch is not installed (pip install torch==2.13.0)",
    )
    import nbformat
    from nbclient import NotebookClient

    home = AgentHome(Path(tempfile.mkdtemp(prefix="mli-", dir="/tmp")))
    settings = [f"--MLInfraApp.{name}={value}" for name, value in home.settings.items()]
    try:
        with running_lab(tmp_path / "lab", extra_args=settings) as lab:
            monkeypatch.setenv("JUPYTER_MLINFRA_URL", lab.base_url)
            monkeypatch.setenv("JUPYTER_MLINFRA_TOKEN", lab.token)
            notebook = nbformat.read(EXAMPLES / "notebooks" / "distributed-pytorch.ipynb", 4)
            NotebookClient(notebook, timeout=180, kernel_name="python3").execute()
    finally:
        home.stop()
    outputs = {
        index: "".join(
            o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
            for o in cell.get("outputs", [])
        )
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
    }
    training = next(text for text in outputs.values() if "step  0" in text)
    assert "[rank 0] step  0" in training and "[rank 1] step  0" in training
    assert any("30 steps, loss" in text for text in outputs.values())
    assert any("working 2" in text for text in outputs.values())
    assert home.live_ranks() == []
    # each job shown once, truthfully: where widgets cannot render, as it was when its cell
    # ended, and saying so; never a state made up for a job the queue has not looked at yet
    submitted = [cell for cell in notebook.cells if "%%mlinfra submit --name" in cell.source]
    for cell in submitted:
        assert len(cell.outputs) == 1 and cell.outputs[0].output_type == "display_data", cell
        shown = cell.outputs[0].data["text/plain"].splitlines()[0]
        assert re.fullmatch(
            r"[0-9a-f]{12} · [\w-]+: (.* · as of \d\d:\d\d:\d\d|succeeded .*)", shown
        )
        assert "position -" not in shown and "starts unknown" not in shown
    cancel = next(text for text in outputs.values() if "too-long: cancelled" in text)
    assert cancel.count("cancelled") == 1, cancel
    assert not [text for text in outputs.values() if "Failed to initialize NumPy" in text]


def test_example_hub_settings_build_catalog_and_quotas() -> None:
    """The settings examples/jupyterhub shares between its agent and users' servers."""
    folder = EXAMPLES / "jupyterhub"
    config = PyFileConfigLoader("jupyter_server_config.py", path=str(folder)).load_config()
    app = MLInfraApp(config=config)
    inventory = app.make_inventory()
    assert [d.index for d in inventory.backend.machine.devices] == [0, 1, 2, 3]
    catalog = inventory.catalog
    assert [f.name for f in catalog.flavors] == ["cpu", "a100x1", "a100x2"]
    assert catalog.environments  # this Python at least
    student = Identity("bob", frozenset({"students"}))
    assert [f.name for f in catalog.for_identity(student).flavors] == ["cpu", "a100x1"]
    assert app.mlinfra_settings.quotas().for_identity(student).max_queued_jobs == 5
    # students cannot jump the queue, nor evict anybody with preemption on
    assert inventory.priorities.for_identity(student) == ["normal", "low"]
    researcher = Identity("alice", frozenset({"research"}))
    assert inventory.priorities.for_identity(researcher) == ["high", "normal", "low"]


def test_example_z2jh_values_hold_valid_settings() -> None:
    """The settings examples/jupyterhub/values.yaml mounts into every user's server."""
    values = yaml.safe_load((EXAMPLES / "jupyterhub" / "values.yaml").read_text())
    files = values["singleuser"]["extraFiles"]
    settings = files["mlinfra-settings"]["data"]["MLInfraApp"]
    assert settings["catalog_file"] == files["mlinfra-catalog"]["mountPath"]
    app = MLInfraApp(config=Config({"MLInfraApp": settings}))
    quotas = app.mlinfra_settings.quotas()
    assert quotas.for_identity(Identity("bob", frozenset({"students"}))).max_gpus == 1
    assert app.mlinfra_settings.priorities().for_identity(
        Identity("bob", frozenset({"students"}))
    ) == [
        "normal",
        "low",
    ]
    scopes = values["hub"]["config"]["Spawner"]["server_token_scopes"]
    assert "read:users:groups!user" in scopes
    rbac = list(yaml.safe_load_all((EXAMPLES / "kubernetes" / "rbac.yaml").read_text()))
    names = {(d["kind"], d["metadata"]["name"]) for d in rbac if d}
    assert ("ServiceAccount", values["singleuser"]["serviceAccountName"]) in names
    namespace = files["mlinfra-settings"]["data"]["KubernetesCluster"]["namespace"]
    assert ("Namespace", namespace) in names
    # the home volume is z2jh's own claim, mounted where z2jh mounts it (the server's root)
    pods = KubernetesPods(config=Config(files["mlinfra-settings"]["data"])).settings("/home/jovyan")
    storage = values["singleuser"]["storage"]
    assert pods.home is not None and pods.home.claim == storage["dynamic"]["pvcNameTemplate"]
    assert pods.home.mount_path == storage["homeMountPath"]
    # the example catalog's dataset claim is the one datasets.yaml makes, in that namespace
    catalog = yaml.safe_load((EXAMPLES / "catalog.yaml").read_text())
    (dataset,) = catalog["environments"][0]["volumes"]
    claims = list(yaml.safe_load_all((EXAMPLES / "kubernetes" / "datasets.yaml").read_text()))
    claim = next(d for d in claims if d["kind"] == "PersistentVolumeClaim")
    assert (claim["metadata"]["name"], claim["metadata"]["namespace"]) == (
        dataset["claim"],
        namespace,
    )
    assert claim["spec"]["accessModes"] == ["ReadOnlyMany"] and dataset["read_only"]
