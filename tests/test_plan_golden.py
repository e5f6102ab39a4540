"""``plan``'s decisions and ``explain``'s words pinned on seeded queues, so that a rewrite of the
planner for readability or speed shows any change of behaviour, however small.

``plan_golden.json`` was written once from the planner as it stood; the queues are built here
from seeded generators, the first like the 10,000-job queue of ``benchmarks/jobs.py`` (phase
4), the others small and varied so that every branch shows: kernels holding devices, jobs that
can never fit, quotas that hold jobs back or refuse them, preemption, backfill, unknown ETAs and
an externally ordered queue. A large queue is pinned by a digest of every pending job plus a
readable sample (a changed digest with an unchanged sample still fails); small ones in full.

When decisions change on purpose, rewrite the file with ``python tests/test_plan_golden.py``
and say why in the commit.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path
from typing import Any

import pytest

from jupyter_mlinfra.capacity import Allocation, Device, Machine
from jupyter_mlinfra.jobs.queue import Plan, plan
from jupyter_mlinfra.jobs.spec import Job, JobSpec, JobState, Resources
from jupyter_mlinfra.quotas import Quota

GOLDEN = Path(__file__).with_name("plan_golden.json")
GiB = 2**30
NOW = 1_000_000.0
GPU = "nvidia.com/gpu"
SAMPLE = 60
"""Pending jobs of a large queue recorded in words (the digest covers all of them)."""


def _job(
    number: int,
    owner: str,
    flavor: str,
    node: Resources,
    *,
    nodes: int = 1,
    priority: int,
    created: float,
    max_runtime: float | None,
    **running: Any,
) -> Job:
    spec = JobSpec(
        code="pass",
        flavor=flavor,
        environment="python",
        nodes=nodes,
        procs_per_node=max(node.accelerators, 1),
        max_runtime_seconds=max_runtime,
    )
    return Job(
        id=f"{number:012x}",
        owner=owner,
        spec=spec,
        priority_value=priority,
        node=node,
        created=created,
        **running,
    )


def benchmark_like(seed: int, pending: int) -> dict[str, Any]:
    """The benchmark's machine and running jobs (every GPU busy), with a queue of the same
    shapes, priorities and owners drawn from a seeded generator instead of in turn."""
    rng = random.Random(seed)
    machine = Machine(
        hostname="bench",
        cpus=64,
        memory_bytes=512 * GiB,
        devices=tuple(Device(i, GPU, "NVIDIA A100-SXM4-80GB") for i in range(8)),
    )
    shapes = [  # flavor, GPUs, CPUs, memory GiB, weight: as benchmarks/jobs.py's SHAPES
        ("cpu", 0, 1, 4, 4),
        ("a100x1", 1, 4, 32, 3),
        ("a100x2", 2, 8, 64, 1),
        ("a100x4", 4, 16, 128, 1),
        ("a100x8", 8, 32, 256, 1),
    ]
    weights = [shape[4] for shape in shapes]

    def resources(gpus: int, cpu: int, memory: int) -> Resources:
        return Resources(cpu, memory * GiB, gpus, GPU if gpus else "", "A100")

    running = [
        _job(
            i,
            f"user{i % 50}",
            "a100x1",
            resources(1, 4, 32),
            priority=0,
            created=NOW - 500,
            max_runtime=600.0 if i % 2 else None,
            state=JobState.RUNNING,
            admitted=NOW - 400,
            started=NOW - 400,
            devices=((i,),),
        )
        for i in range(8)
    ]
    queued = []
    for i in range(pending):
        flavor, gpus, cpu, memory, _ = rng.choices(shapes, weights)[0]
        queued.append(
            _job(
                100 + i,
                f"user{rng.randrange(50)}",
                flavor,
                resources(gpus, cpu, memory),
                priority=rng.choice((0, 100, 1000)),
                created=NOW - rng.randrange(pending),
                max_runtime=rng.choice((600.0, None)),
            )
        )
    return {
        "queued": queued,
        "running": running,
        "leases": [],
        "machine": machine,
        "durations": {"cpu": 120.0, "a100x1": 900.0, "a100x2": 1800.0},
    }


def varied(seed: int, pending: int) -> dict[str, Any]:
    """A small machine of two GPU models, partly held by running jobs and kernels, and a queue
    of every kind of job, including ones that can never fit."""
    rng = random.Random(seed)
    models = ["A100-SXM4-80GB" if rng.random() < 0.5 else "H100 80GB HBM3" for _ in range(8)]
    machine = Machine(
        hostname="box",
        cpus=32,
        memory_bytes=256 * GiB,
        devices=tuple(Device(i, GPU, model, 80 * GiB) for i, model in enumerate(models)),
    )
    owners = ["alice", "bob", "carol", "dave"]
    flavors = ["cpu", "small", "large", "rare"]
    free = list(range(8))
    rng.shuffle(free)
    running, leases = [], []
    for n in range(rng.randrange(1, 5)):
        gpus = min(rng.choice((0, 1, 2)), len(free))
        held = tuple(sorted(free.pop() for _ in range(gpus)))
        node = Resources(2, rng.choice((8, 64)) * GiB, gpus, GPU if gpus else "", "")
        admitted = rng.choice((NOW - 600, None))
        running.append(
            _job(
                n,
                rng.choice(owners),
                rng.choice(flavors),
                node,
                priority=rng.choice((0, 100)),
                created=NOW - 900 + n,
                max_runtime=rng.choice((300.0, 3000.0, None)),
                state=JobState.RUNNING,
                admitted=admitted,
                started=rng.choice((admitted, None)),
                devices=(held,),
            )
        )
    for n in range(rng.randrange(0, 4)):
        gpus = min(rng.choice((0, 1)), len(free))
        leases.append(
            Allocation(
                holder=f"kernel:k{n}",
                owner=rng.choice(owners),
                flavor="small",
                cpu=rng.choice((1.0, 8.0)),
                memory_bytes=4 * GiB,
                devices=tuple(free.pop() for _ in range(gpus)),
            )
        )
    # A few shapes per queue, as real queues have, so that jobs of one shape meet again.
    shapes = []
    for _ in range(rng.randrange(3, 8)):
        # Mostly shapes that can fit, a few that never can (16 GPUs, a V100, 40 CPUs, 300 GiB).
        gpus = rng.choices((0, 1, 2, 4, 8, 16), (6, 6, 4, 2, 1, 0.3))[0]
        model = rng.choices(("", "A100", "H100", "V100"), (4, 2, 2, 0.3))[0]
        node = Resources(
            rng.choices((0.5, 1, 4, 16, 40), (2, 4, 3, 1, 0.2))[0],
            rng.choices((1, 16, 64, 128, 300), (4, 4, 2, 1, 0.2))[0] * GiB,
            gpus,
            GPU if gpus else "",
            model if gpus else "",
        )
        shapes.append((node, rng.choice((1, 1, 1, 2))))
    queued = []
    for i in range(pending):
        node, nodes = rng.choice(shapes)
        queued.append(
            _job(
                100 + i,
                rng.choice(owners),
                rng.choice(flavors),
                node,
                nodes=nodes,
                priority=rng.choice((0, 100, 1000)),
                created=NOW - rng.randrange(10_000),
                max_runtime=rng.choice((60.0, 600.0, 3600.0, None, None)),
            )
        )
    quotas = {
        owner: Quota(
            max_gpus=rng.choices((None, 2, 4, 8, 0), (3, 2, 2, 1, 0.5))[0],
            max_running_jobs=rng.choices((None, 1, 3, 0), (3, 2, 2, 0.5))[0],
        )
        for owner in owners
        if rng.random() < 0.6
    }  # fmt: skip
    durations = {flavor: rng.choice((30.0, 600.0, 5000.0)) for flavor in flavors[:2]}
    return {
        "queued": queued,
        "running": running,
        "leases": leases,
        "machine": machine,
        "durations": durations,
        "quotas": quotas,
        "preemption": rng.random() < 0.5,
    }


def lent_reservation() -> dict[str, Any]:
    """The rare case the seeded queues miss: a job whose start is unknown for want of CPUs
    reserves devices that a CPU-less job behind it may still use, when nothing else is left;
    the next one then waits for them."""
    devices = [Device(i, GPU, "H100 80GB HBM3" if i < 4 else "A100-SXM4-80GB") for i in range(8)]
    machine = Machine(hostname="box", cpus=32, memory_bytes=256 * GiB, devices=tuple(devices))
    gpus = Resources(2, GiB, 4, GPU, "")
    running = [
        _job(
            n,
            "alice",
            "gpu",
            gpus,
            priority=0,
            created=NOW - 900,
            max_runtime=runtime,
            state=JobState.RUNNING,
            admitted=NOW - 600,
            started=NOW - 600,
            devices=(held,),
        )
        for n, held, runtime in ((0, (0, 1, 2, 3), 600.0), (1, (4, 5, 6, 7), None))
    ]
    kernel = Allocation("kernel:k", "bob", "cpu", 8.0, GiB)
    queued = [
        _job(10 + n, "carol", "gpu", node, priority=1000 - n, created=NOW - 100, max_runtime=60.0)
        for n, node in enumerate(
            (Resources(30, GiB, 2, GPU, "H100"), *[Resources(0, 0, 2, GPU, "")] * 2)
        )
    ]
    return {
        "queued": queued,
        "running": running,
        "leases": [kernel],
        "machine": machine,
        "durations": {},
    }


def _decisions(result: Plan, sample: int | None, seed: int) -> dict[str, Any]:
    """The plan as JSON: admissions and preemptions in full, the pending jobs in full or as a
    digest of all of them plus a seeded sample, in the order ``plan`` gives them."""
    pending = {
        job_id: [p.position, p.reason, p.code.value, p.eta, p.eta_basis]
        for job_id, p in result.pending.items()
    }
    out: dict[str, Any] = {
        "admit": [[job_id, [list(node) for node in devices]] for job_id, devices in result.admit],
        "preempt": [list(pair) for pair in result.preempt],
    }
    if sample is None:
        out["pending"] = pending
        return out
    text = json.dumps(pending, sort_keys=False, separators=(",", ":"))
    out["pending_count"] = len(pending)
    out["pending_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    chosen = set(random.Random(seed).sample(sorted(pending), sample))
    out["pending_sample"] = {job_id: p for job_id, p in pending.items() if job_id in chosen}
    return out


def _run(inputs: dict[str, Any], quotas: dict[str, Quota], preemption: bool, **kw: Any) -> Plan:
    return plan(
        inputs["queued"],
        inputs["running"],
        inputs["leases"],
        inputs["machine"],
        quotas,
        NOW,
        preemption=preemption,
        durations=inputs["durations"],
        **kw,
    )


def cases() -> dict[str, dict[str, Any]]:
    """Every pinned plan by name."""
    out: dict[str, dict[str, Any]] = {}
    bench = benchmark_like(seed=4, pending=10_000)
    quotas = {f"user{u}": Quota(max_gpus=4, max_running_jobs=8) for u in range(50)}
    for name, owner_quotas, preemption in (
        ("benchmark, no quotas", {}, False),
        ("benchmark, quotas + preemption", quotas, True),
    ):
        out[name] = _decisions(_run(bench, owner_quotas, preemption), SAMPLE, seed=13)
    out["lent reservation"] = _decisions(_run(lent_reservation(), {}, False), None, 0)
    for seed in range(40):
        inputs = varied(seed, pending=15)
        in_order = seed % 3 == 2  # a queue ordered by someone else (Kueue's positions)
        result = _run(inputs, inputs["quotas"], inputs["preemption"], in_order=in_order)
        out[f"varied {seed}{', in order' if in_order else ''}"] = _decisions(result, None, 0)
    return out


@pytest.fixture(scope="module")
def actual() -> dict[str, dict[str, Any]]:
    return cases()


GOLDEN_CASES = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}


def test_the_same_cases_are_pinned(actual: dict[str, dict[str, Any]]) -> None:
    assert sorted(actual) == sorted(GOLDEN_CASES)


@pytest.mark.parametrize("name", sorted(GOLDEN_CASES))
def test_plan_decides_and_explains_as_pinned(name: str, actual: dict[str, dict[str, Any]]) -> None:
    expected = GOLDEN_CASES[name]
    got = json.loads(json.dumps(actual[name]))
    # Field by field first, so that a failure names what moved rather than only a digest.
    for key in ("admit", "preempt", "pending", "pending_count", "pending_sample"):
        assert got.get(key) == expected.get(key), key
    assert got == expected


def _layout(pinned: dict[str, dict[str, Any]]) -> str:
    """JSON with one line per admission and per pending job, so that a diff reads."""
    lines = ["{"]
    for n, (name, case) in enumerate(pinned.items()):
        lines.append(f"{json.dumps(name)}: {{")
        for m, (key, value) in enumerate(case.items()):
            if isinstance(value, dict):
                items = [
                    f"  {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}"
                    for k, v in value.items()
                ]
                body = "{\n" + ",\n".join(items) + "\n }" if items else "{}"
            elif isinstance(value, list):
                items = [f"  {json.dumps(v)}" for v in value]
                body = "[\n" + ",\n".join(items) + "\n ]" if items else "[]"
            else:
                body = json.dumps(value)
            lines.append(f" {json.dumps(key)}: {body}{',' * (m < len(case) - 1)}")
        lines.append("}" + "," * (n < len(pinned) - 1))
    return "\n".join(lines) + "\n}\n"


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(
            "usage: python tests/test_plan_golden.py --write  (when decisions change on purpose)"
        )
    GOLDEN.write_text(_layout(cases()))
