"""The local backend's view of this machine: GPU detection, the built-in catalog, and how
the server chooses between configured, file and built-in catalogs."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from jupyter_mlinfra.backends.local import LocalBackend
from jupyter_mlinfra.backends.local.builtin import builtin_catalog
from jupyter_mlinfra.backends.local.machine import (
    NVIDIA_GPU,
    detect_machine,
    parse_nvidia_smi,
)
from jupyter_mlinfra.capacity import Device, Machine
from jupyter_mlinfra.catalog import Catalog, build_catalog
from jupyter_mlinfra.errors import CatalogError
from jupyter_mlinfra.settings import Settings

from .conftest import write_fake_nvidia_smi

Gi, Mi = 2**30, 2**20
PYTHON = f"Python {sys.version_info.major}.{sys.version_info.minor}"

SMI_OUTPUT = """\
index, uuid, name, memory.total
0, GPU-aaaa, NVIDIA A100-SXM4-80GB, 81920

No devices were found
1, GPU-bbbb, NVIDIA H100 80GB HBM3, 81559
x, GPU-zzzz, NVIDIA Ghost, 1
3, too, few
2, GPU-cccc, Tesla T4, [N/A]
"""
A100 = Device(0, NVIDIA_GPU, "A100-SXM4-80GB", 81920 * Mi)
H100 = Device(1, NVIDIA_GPU, "H100 80GB HBM3", 81559 * Mi)
T4 = Device(2, NVIDIA_GPU, "Tesla T4", 0)


def renumbered(*devices: Device) -> list[Device]:
    return [Device(i, d.kind, d.model, d.memory_bytes) for i, d in enumerate(devices)]


# --- nvidia-smi --------------------------------------------------------------------------------


def test_parse_nvidia_smi() -> None:
    assert parse_nvidia_smi(SMI_OUTPUT, None) == [A100, H100, T4]


def test_parse_nvidia_smi_of_nothing() -> None:
    assert parse_nvidia_smi("", None) == []
    assert parse_nvidia_smi("No devices were found\n", "0") == []


@pytest.mark.parametrize(
    ("visible", "devices"),
    [
        ("0,1,2", [A100, H100, T4]),
        ("2,0", [T4, A100]),
        ("1", [H100]),
        (" 1 , 2 ", [H100, T4]),
        ("GPU-bbbb", [H100]),
        ("GPU-cccc,0", [T4, A100]),
        ("", []),
        (",", []),
        ("-1", []),
        ("0,7,1", [A100]),  # CUDA ignores everything from the first invalid entry on
        ("GPU-nope,1", []),
        ("ALL", []),
    ],
)
def test_cuda_visible_devices(visible: str, devices: list[Device]) -> None:
    assert parse_nvidia_smi(SMI_OUTPUT, visible) == renumbered(*devices)


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    write_fake_nvidia_smi(folder, ["A100-SXM4-80GB", "A100-SXM4-80GB", "H100 80GB HBM3"])
    return folder


def test_detect_machine_runs_nvidia_smi(fake_bin: Path) -> None:
    machine = detect_machine({"PATH": str(fake_bin)})
    assert machine.hostname == socket.gethostname()
    assert machine.cpus == len(os.sched_getaffinity(0))
    assert machine.cpus >= 1
    assert machine.memory_bytes > 0
    assert machine.devices == (
        Device(0, NVIDIA_GPU, "A100-SXM4-80GB", 81559 * Mi),
        Device(1, NVIDIA_GPU, "A100-SXM4-80GB", 81559 * Mi),
        Device(2, NVIDIA_GPU, "H100 80GB HBM3", 81559 * Mi),
    )


def test_detect_machine_follows_cuda_visible_devices(fake_bin: Path) -> None:
    environ = {"PATH": str(fake_bin), "CUDA_VISIBLE_DEVICES": "GPU-0002-uuid,0"}
    assert detect_machine(environ).devices == (
        Device(0, NVIDIA_GPU, "H100 80GB HBM3", 81559 * Mi),
        Device(1, NVIDIA_GPU, "A100-SXM4-80GB", 81559 * Mi),
    )
    hidden = {"PATH": str(fake_bin), "CUDA_VISIBLE_DEVICES": ""}
    assert detect_machine(hidden).devices == ()


def test_detect_machine_without_nvidia_smi(tmp_path: Path) -> None:
    machine = detect_machine({"PATH": str(tmp_path)})
    assert machine.devices == ()
    assert machine.cpus >= 1


def test_detect_machine_when_nvidia_smi_fails(tmp_path: Path) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    smi.chmod(0o755)
    assert detect_machine({"PATH": str(tmp_path)}).devices == ()


# --- the built-in catalog ----------------------------------------------------------------------


def gpus(model: str, count: int, first: int = 0) -> tuple[Device, ...]:
    return tuple(Device(first + i, NVIDIA_GPU, model) for i in range(count))


def test_builtin_catalog_of_a_cpu_machine() -> None:
    document = builtin_catalog(Machine("laptop", 8, 16 * Gi), set())
    assert document == {
        "flavors": [
            {
                "name": "cpu",
                "display_name": "CPU · 1 core · 4Gi",
                "description": "One CPU core of laptop",
                "cpu": 1,
                "memory": 4 * Gi,
            }
        ],
        "environments": [
            {
                "name": "python",
                "display_name": PYTHON,
                "description": "This server's Python",
                "framework": "generic",
                "python": sys.executable,
            }
        ],
        "default_flavor": "cpu",
        "default_environment": "python",
    }


@pytest.mark.parametrize(
    ("memory", "cpu_memory"),
    [(2 * Gi, Gi), (6 * Gi, Gi), (8 * Gi, 2 * Gi), (14 * Gi, 3 * Gi), (512 * Gi, 4 * Gi)],
)
def test_cpu_flavor_takes_a_quarter_of_memory_between_1_and_4_gib(
    memory: int, cpu_memory: int
) -> None:
    cpu = builtin_catalog(Machine("m", 2, memory), set())["flavors"][0]
    assert cpu["memory"] == cpu_memory


def test_builtin_gpu_flavors_with_their_shares() -> None:
    machine = Machine("box", 32, 256 * Gi, gpus("H100 80GB HBM3", 6))
    flavors = builtin_catalog(machine, set())["flavors"]
    assert [f["name"] for f in flavors] == ["cpu", "h100x1", "h100x2", "h100x4", "h100x6"]
    assert flavors[1] == {
        "name": "h100x1",
        "display_name": "1 × H100 80GB HBM3 · 5 CPU · 42Gi",
        "description": "1 of the 6 H100 80GB HBM3 GPUs of box",
        "accelerator": {"kind": NVIDIA_GPU, "model": "H100 80GB HBM3", "count": 1},
        "cpu": 5,
        "memory": 42 * Gi,
    }
    shares = [(f["accelerator"]["count"], f["cpu"], f["memory"] // Gi) for f in flavors[1:]]
    assert shares == [(1, 5, 42), (2, 10, 85), (4, 21, 170), (6, 32, 256)]


@pytest.mark.parametrize(
    ("total", "counts"),
    [
        (1, [1]),
        (2, [1, 2]),
        (3, [1, 2, 3]),
        (6, [1, 2, 4, 6]),
        (8, [1, 2, 4, 8]),
        (48, [1, 2, 4, 8, 16, 32, 48]),
    ],
)
def test_builtin_gpu_counts_are_powers_of_two_and_all(total: int, counts: list[int]) -> None:
    flavors = builtin_catalog(Machine("m", 64, 512 * Gi, gpus("A100", total)), set())["flavors"]
    assert [f["name"] for f in flavors[1:]] == [f"a100x{c}" for c in counts]


def test_builtin_gpu_flavors_per_model_share_the_whole_machine() -> None:
    machine = Machine("mix", 12, 96 * Gi, gpus("A100-SXM4-80GB", 4) + gpus("Tesla T4", 2, 4))
    flavors = builtin_catalog(machine, set())["flavors"]
    summary = [
        (f["name"], f["accelerator"]["model"], f["cpu"], f["memory"] // Gi) for f in flavors[1:]
    ]
    assert summary == [
        ("a100-sxm4-80gbx1", "A100-SXM4-80GB", 2, 16),
        ("a100-sxm4-80gbx2", "A100-SXM4-80GB", 4, 32),
        ("a100-sxm4-80gbx4", "A100-SXM4-80GB", 8, 64),
        ("teslax1", "Tesla T4", 2, 16),
        ("teslax2", "Tesla T4", 4, 32),
    ]


def test_builtin_shares_never_drop_below_one_cpu_and_one_gib() -> None:
    flavors = builtin_catalog(Machine("tiny", 2, 2 * Gi, gpus("A100", 8)), set())["flavors"]
    assert flavors[1]["cpu"] == 1
    assert flavors[1]["memory"] == Gi
    assert flavors[1]["display_name"] == "1 × A100 · 1 CPU · 1Gi"


def test_builtin_gpu_without_a_model_name_is_called_gpu() -> None:
    flavors = builtin_catalog(Machine("m", 4, 8 * Gi, gpus("", 1)), set())["flavors"]
    assert flavors[1]["name"] == "gpux1"


def test_builtin_catalog_of_two_models_sharing_a_first_word_is_valid() -> None:
    devices = gpus("GeForce RTX 4090", 1) + gpus("GeForce RTX 3090", 1, 1) + gpus("H100", 1, 2)
    catalog = build_catalog(**builtin_catalog(Machine("workstation", 16, 64 * Gi, devices), set()))
    names = [f.name for f in catalog.flavors]
    assert names == ["cpu", "geforce-rtx-4090x1", "geforce-rtx-3090x1", "h100x1"]


def test_builtin_environments_follow_the_frameworks() -> None:
    environments = builtin_catalog(Machine("m", 1, Gi), {"pytorch", "jax", "sklearn"})[
        "environments"
    ]
    assert [e["name"] for e in environments] == ["python", "jax", "pytorch"]
    assert environments[2] == {
        "name": "pytorch",
        "display_name": "PyTorch",
        "description": "PyTorch installed in this server's Python",
        "framework": "pytorch",
        "python": sys.executable,
    }
    everything = builtin_catalog(Machine("m", 1, Gi), {"pytorch", "tensorflow", "jax"})
    assert [(e["name"], e["display_name"]) for e in everything["environments"]] == [
        ("python", PYTHON),
        ("jax", "JAX"),
        ("pytorch", "PyTorch"),
        ("tensorflow", "TensorFlow"),
    ]


@pytest.mark.parametrize(
    "machine",
    [
        Machine("laptop", 1, Gi // 2),
        Machine("box", 32, 256 * Gi, gpus("H100 80GB HBM3", 6)),
        Machine("mix", 12, 96 * Gi, gpus("A100-SXM4-80GB", 4) + gpus("Tesla T4", 2, 4)),
        Machine("odd", 3, 5 * Gi, gpus("RTX A6000", 3)),
    ],
)
def test_builtin_catalog_is_valid(machine: Machine) -> None:
    document = builtin_catalog(machine, {"pytorch", "tensorflow", "jax"})
    catalog = build_catalog(**document)
    assert catalog.default_flavor == "cpu"
    assert catalog.default_environment == "python"
    assert catalog.flavors[0].accelerator is None
    assert all(f.accelerators > 0 for f in catalog.flavors[1:])
    for raw, flavor in zip(document["flavors"], catalog.flavors, strict=True):
        assert flavor.display_name == raw["display_name"]
        assert flavor.memory_bytes == raw["memory"]


# --- Settings.catalog: settings > catalog_file > built-in ------------------------------------

BACKEND = LocalBackend(machine=Machine("box", 8, 32 * Gi, gpus("A100", 1)))
FILE_CATALOG = """\
flavors:
  - name: small
    cpu: 2
    memory: 4Gi
  - name: large
    cpu: 8
    memory: 32Gi
environments:
  - name: base
  - name: torch
    framework: pytorch
default_flavor: large
default_environment: torch
"""


def settings_of(**values: Any) -> Settings:
    """Settings as the server would read them from ``c.MLInfraApp``."""
    return Settings.from_document(values)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "catalog.yaml"
    path.write_text(text)
    return str(path)


def summary(catalog: Catalog) -> tuple[list[str], str, list[str], str]:
    return (
        [f.name for f in catalog.flavors],
        catalog.default_flavor,
        [e.name for e in catalog.environments],
        catalog.default_environment,
    )


def test_make_catalog_defaults_to_the_builtin_catalog() -> None:
    flavors, default_flavor, environments, default_environment = summary(
        settings_of().catalog(BACKEND.builtin_catalog)
    )
    assert (flavors, default_flavor) == (["cpu", "a100x1"], "cpu")
    assert environments[0] == "python"
    assert default_environment == "python"


def test_make_catalog_from_settings(tmp_path: Path) -> None:
    app = settings_of(
        flavors=[{"name": "t1"}, {"name": "t2"}],
        environments=[{"name": "te"}],
        catalog_file=write(tmp_path, FILE_CATALOG),
    )
    assert summary(app.catalog(BACKEND.builtin_catalog)) == (["t1", "t2"], "t1", ["te"], "te")


def test_make_catalog_settings_choose_their_defaults() -> None:
    app = settings_of(
        flavors=[{"name": "t1"}, {"name": "t2"}],
        environments=[{"name": "te"}],
        default_flavor="t2",
    )
    assert summary(app.catalog(BACKEND.builtin_catalog)) == (["t1", "t2"], "t2", ["te"], "te")


def test_make_catalog_from_a_file(tmp_path: Path) -> None:
    app = settings_of(catalog_file=write(tmp_path, FILE_CATALOG))
    catalog = app.catalog(BACKEND.builtin_catalog)
    assert summary(catalog) == (["small", "large"], "large", ["base", "torch"], "torch")
    assert catalog.flavor("large").memory_bytes == 32 * Gi


def test_settings_override_one_list_of_the_file_and_its_default(tmp_path: Path) -> None:
    # The file's default_flavor 'large' belongs to the file's flavors: it does not travel.
    app = settings_of(flavors=[{"name": "t1"}], catalog_file=write(tmp_path, FILE_CATALOG))
    assert summary(app.catalog(BACKEND.builtin_catalog)) == (
        ["t1"],
        "t1",
        ["base", "torch"],
        "torch",
    )


def test_the_default_setting_wins_over_the_files(tmp_path: Path) -> None:
    app = settings_of(catalog_file=write(tmp_path, FILE_CATALOG), default_environment="base")
    assert summary(app.catalog(BACKEND.builtin_catalog)) == (
        ["small", "large"],
        "large",
        ["base", "torch"],
        "base",
    )


def test_a_file_with_flavors_only_takes_builtin_environments(tmp_path: Path) -> None:
    app = settings_of(catalog_file=write(tmp_path, "flavors:\n  - name: small\n"))
    flavors, default_flavor, environments, default_environment = summary(
        app.catalog(BACKEND.builtin_catalog)
    )
    assert (flavors, default_flavor) == (["small"], "small")
    assert (environments[0], default_environment) == ("python", "python")


def test_settings_with_environments_only_take_builtin_flavors() -> None:
    app = settings_of(environments=[{"name": "te"}], default_flavor="a100x1")
    assert summary(app.catalog(BACKEND.builtin_catalog)) == (
        ["cpu", "a100x1"],
        "a100x1",
        ["te"],
        "te",
    )


def test_an_empty_file_means_the_builtin_catalog(tmp_path: Path) -> None:
    app = settings_of(catalog_file=write(tmp_path, ""))
    assert summary(app.catalog(BACKEND.builtin_catalog))[:2] == (["cpu", "a100x1"], "cpu")


def catalog_problems(app: Settings) -> list[str]:
    with pytest.raises(CatalogError) as caught:
        app.catalog(BACKEND.builtin_catalog)
    return caught.value.problems


def test_catalog_file_with_an_unknown_key(tmp_path: Path) -> None:
    app = settings_of(catalog_file=write(tmp_path, "flavours: []\n"))
    assert catalog_problems(app) == [
        "catalog_file: unknown field 'flavours' (did you mean 'flavors'?); "
        "known fields: flavors, environments, default_flavor, default_environment"
    ]


def test_catalog_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    app = settings_of(catalog_file=write(tmp_path, "- name: cpu\n"))
    assert catalog_problems(app) == ["catalog_file: must be a mapping, got list"]


def test_catalog_file_with_invalid_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "flavors: [\n")
    (problem,) = catalog_problems(settings_of(catalog_file=path))
    assert problem.startswith(f"catalog_file: {path} is not valid YAML: ")
    assert "line 2" in problem


def test_missing_catalog_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    assert catalog_problems(settings_of(catalog_file=str(path))) == [
        f"catalog_file: cannot read {path}: No such file or directory"
    ]


def test_a_broken_catalog_file_fails_even_when_settings_override_it(tmp_path: Path) -> None:
    app = settings_of(
        flavors=[{"name": "t"}],
        environments=[{"name": "e"}],
        catalog_file=str(tmp_path / "missing.yaml"),
    )
    assert catalog_problems(app)[0].startswith("catalog_file: cannot read ")


def test_entries_of_a_catalog_file_are_validated(tmp_path: Path) -> None:
    text = "flavors:\n  - name: x\n    cpu: lots\ndefault_flavor: nope\n"
    assert catalog_problems(settings_of(catalog_file=write(tmp_path, text))) == [
        "flavors[0] 'x'.cpu: expected cores such as 4 or '500m', got 'lots'",
        "default_flavor: 'nope' is not in the catalog (known: x)",
    ]


def test_a_default_in_a_file_without_its_list_is_not_used(tmp_path: Path) -> None:
    text = "flavors:\n  - name: x\ndefault_environment: nope\n"
    catalog = settings_of(catalog_file=write(tmp_path, text)).catalog(BACKEND.builtin_catalog)
    assert catalog.default_environment == "python"  # the built-in list, with its default


def test_an_admin_inventory_replaces_detection() -> None:
    from jupyter_mlinfra.backends.local.machine import parse_inventory

    inventory = [
        {"index": 1, "model": "A100", "memory": "80Gi"},
        {"index": 0, "kind": "amd.com/gpu", "model": "MI300X"},
    ]
    machine = detect_machine({"PATH": "/nonexistent"}, inventory=inventory)
    assert [(d.index, d.kind, d.model) for d in machine.devices] == [
        (0, "amd.com/gpu", "MI300X"),
        (1, "nvidia.com/gpu", "A100"),
    ]
    assert machine.devices[1].memory_bytes == 80 * Gi
    with pytest.raises(CatalogError) as caught:
        parse_inventory([{"index": 0}, {"index": 0, "modle": "x"}, {"index": -1}, "gpu"])
    assert caught.value.problems == [
        "local_accelerators[1]: unknown field 'modle'; known: index, kind, model, memory",
        "local_accelerators[1].index: device 0 is listed twice",
        "local_accelerators[2].index: must be a whole number >= 0, got -1",
        "local_accelerators[3]: must be a mapping with index, kind, model",
    ]
