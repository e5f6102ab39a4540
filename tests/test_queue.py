"""Admission as a pure function: gang, order, quotas, per-device assignment, backfill behind a
reserving head, preemption, reasons and ETAs, refusal of jobs that can never fit."""

from __future__ import annotations

from collections.abc import Sequence

from jupyter_mlinfra.capacity import Allocation, Device, Machine
from jupyter_mlinfra.jobs.pending import Pending
from jupyter_mlinfra.jobs.queue import Plan, plan, refusal
from jupyter_mlinfra.jobs.spec import Job, JobSpec, JobState, PendingReason, Resources
from jupyter_mlinfra.quotas import Quota

GPU = "nvidia.com/gpu"
Gi = 2**30
NOW = 1000.0
WAIT_CAPACITY = PendingReason.WAITING_FOR_CAPACITY
WAIT_QUOTA = PendingReason.WAITING_FOR_QUOTA


def machine(gpus: int = 8, cpus: int = 32, memory: int = 256 * Gi, models: str = "") -> Machine:
    """``models`` like "AAAAHHHH" gives A100s and H100s by index; default all H100."""
    names = {"A": "A100-SXM4-80GB", "H": "H100 80GB HBM3"}
    kinds = models or "H" * gpus
    devices = tuple(Device(i, GPU, names[m], 80 * Gi) for i, m in enumerate(kinds))
    return Machine(hostname="box", cpus=cpus, memory_bytes=memory, devices=devices)


def job(
    id: str,
    *,
    gpus: int = 0,
    nodes: int = 1,
    cpu: float = 1,
    memory: int = Gi,
    priority: int = 0,
    created: float = 0.0,
    owner: str = "alice",
    max_runtime: float | None = None,
    flavor: str = "gpu",
    model: str = "",
    devices: Sequence[Sequence[int]] = (),
    started: float | None = None,
) -> Job:
    """A job; given ``devices`` (per node) or ``started`` it is running and holds them."""
    holds = bool(devices) or started is not None
    spec = JobSpec(
        name=id, code="pass", flavor=flavor, nodes=nodes, max_runtime_seconds=max_runtime
    )
    node = Resources(
        cpu=cpu,
        memory_bytes=memory,
        accelerators=gpus,
        accelerator_kind=GPU if gpus else "",
        accelerator_model=model,
    )
    return Job(
        id=id,
        owner=owner,
        spec=spec,
        priority_value=priority,
        node=node,
        state=JobState.RUNNING if holds else JobState.QUEUED,
        created=created,
        started=started if started is not None else (0.0 if holds else None),
        devices=tuple(tuple(d) for d in devices) or (((),) * nodes if holds else ()),
    )


def run(
    queued: Sequence[Job],
    running: Sequence[Job] = (),
    *,
    leases: Sequence[Allocation] = (),
    box: Machine | None = None,
    quotas: dict[str, Quota] | None = None,
    preemption: bool = False,
    durations: dict[str, float] | None = None,
) -> Plan:
    box = box or machine()
    return plan(
        queued, running, leases, box, quotas or {}, NOW,
        preemption=preemption, durations=durations or {},
    )  # fmt: skip


def admitted(result: Plan) -> dict[str, tuple[tuple[int, ...], ...]]:
    return dict(result.admit)


# --- gang admission -----------------------------------------------------------------------


def test_gang_of_two_nodes_needs_all_four_devices_at_once() -> None:
    holder = job("r", gpus=1, devices=[[0]], max_runtime=100, started=NOW - 50)
    small = machine(gpus=4)
    result = run([job("g", gpus=2, nodes=2)], [holder], box=small)
    assert result.admit == ()
    assert result.pending["g"] == Pending(
        1,
        "waiting for 4 × nvidia.com/gpu, 3 free; no jobs ahead",
        WAIT_CAPACITY,
        NOW + 50,
        "max runtime of 1 running job",
    )
    result = run([job("g", gpus=2, nodes=2)], box=small)
    assert admitted(result) == {"g": ((0, 1), (2, 3))}
    assert result.pending == {}


def test_gang_cpu_and_memory_count_per_node() -> None:
    result = run([job("g", nodes=2, cpu=20)], box=machine(cpus=32))
    assert result.admit == ()
    assert result.pending["g"].code is PendingReason.NO_MATCHING_FLAVOR
    result = run([job("g", nodes=2, cpu=16), job("h", cpu=1)], box=machine(cpus=32))
    assert admitted(result) == {"g": ((), ())}
    assert result.pending["h"].reason == "waiting for 1 CPUs, 0 free; no jobs ahead"


# --- order --------------------------------------------------------------------------------


def test_priority_first_then_fifo_then_id() -> None:
    queued = [
        job("low-old", gpus=8, created=1),
        job("high-new", gpus=8, priority=10, created=5),
        job("high-old", gpus=8, priority=10, created=2),
        job("b-tie", gpus=8, created=3),
        job("a-tie", gpus=8, created=3),
    ]
    result = run(queued)
    assert admitted(result) == {"high-old": ((0, 1, 2, 3, 4, 5, 6, 7),)}
    positions = {id: p.position for id, p in result.pending.items()}
    assert positions == {"high-new": 1, "low-old": 2, "a-tie": 3, "b-tie": 4}
    assert result.pending["low-old"].reason == (
        "waiting for 8 × nvidia.com/gpu, 0 free; 1 job ahead"
    )
    assert result.pending["b-tie"].reason.endswith("; 3 jobs ahead")


# --- quotas -------------------------------------------------------------------------------


def test_gpu_quota_holds_the_owner_back_but_not_other_owners() -> None:
    mine = job("mine", gpus=8, devices=[range(8)], max_runtime=600, started=900, owner="alice")
    queued = [
        job("alice-1", gpus=1, created=1, owner="alice"),
        job("bob-1", cpu=2, created=2, owner="bob"),
    ]
    quotas = {"alice": Quota(max_gpus=8)}
    result = run(queued, [mine], box=machine(gpus=16), quotas=quotas)
    assert admitted(result) == {"bob-1": ((),)}
    assert result.pending["alice-1"] == Pending(
        1, "user quota: 8 of 8 GPUs in use", WAIT_QUOTA, 1500.0, "max runtime of 1 running job"
    )


def test_gpu_quota_counts_jobs_admitted_in_the_same_plan_and_says_what_is_needed() -> None:
    queued = [
        job("a1", gpus=4, created=1),
        job("a2", gpus=4, created=2),
        job("b1", gpus=2, created=3, owner="bob"),
    ]
    result = run(queued, quotas={"alice": Quota(max_gpus=6)})
    assert admitted(result) == {"a1": ((0, 1, 2, 3),), "b1": ((4, 5),)}
    pending = result.pending["a2"]
    assert pending.reason == "user quota: 4 of 6 GPUs in use, needs 4"
    assert pending.code is WAIT_QUOTA
    assert (pending.eta, pending.eta_basis) == (
        None,
        "unknown: the owner's jobs holding the quota have no max runtime and no history",
    )


def test_running_jobs_quota() -> None:
    running = [
        job("r1", cpu=1, started=0, max_runtime=50),
        job("r2", cpu=1, started=0, max_runtime=80),
    ]
    queued = [job("q", cpu=1, created=1), job("other", cpu=1, created=2, owner="bob")]
    result = run(queued, running, quotas={"alice": Quota(max_running_jobs=2)})
    assert admitted(result) == {"other": ((),)}
    assert result.pending["q"] == Pending(
        1, "user quota: 2 of 2 running jobs", WAIT_QUOTA, 1000.0, "max runtime of 1 running job"
    )


def test_quota_eta_waits_for_enough_of_the_owners_jobs() -> None:
    running = [
        job("r1", gpus=2, devices=[[0, 1]], started=900, max_runtime=200),
        job("r2", gpus=2, devices=[[2, 3]], started=900, max_runtime=300),
    ]
    quotas = {"alice": Quota(max_gpus=4)}
    result = run([job("q", gpus=4)], running, quotas=quotas)
    assert result.pending["q"] == Pending(
        1, "user quota: 4 of 4 GPUs in use", WAIT_QUOTA, 1200.0, "max runtime of 2 running jobs"
    )


def test_kernel_leases_count_towards_the_gpu_quota() -> None:
    lease = Allocation("kernel:k1", "alice", "gpu", cpu=2, memory_bytes=Gi, devices=(0, 1))
    result = run([job("q", gpus=1)], leases=[lease], quotas={"alice": Quota(max_gpus=2)})
    assert result.pending["q"].reason == "user quota: 2 of 2 GPUs in use"
    assert result.pending["q"].eta is None


# --- per-device assignment ----------------------------------------------------------------


def held(indices: Sequence[int]) -> list[Job]:
    return [job(f"h{i}", gpus=1, devices=[[i]], max_runtime=100) for i in indices]


def test_best_fit_takes_the_block_that_leaves_no_device_stranded() -> None:
    result = run([job("q", gpus=2)], held([1]), box=machine(gpus=4))
    assert admitted(result) == {"q": ((2, 3),)}


def test_one_device_fills_a_hole_first() -> None:
    result = run([job("q", gpus=1)], held([1]), box=machine(gpus=4))
    assert admitted(result) == {"q": ((0,),)}


def test_ties_go_to_the_lowest_index_so_the_rest_stays_whole() -> None:
    result = run([job("q", gpus=2)], held([0, 1, 2, 5]))
    assert admitted(result) == {"q": ((3, 4),)}
    result = run([job("q", gpus=2)], [])
    assert admitted(result) == {"q": ((0, 1),)}


def test_a_contiguous_run_beats_a_scattered_set() -> None:
    result = run([job("q", gpus=3)], held([0, 4]))
    assert admitted(result) == {"q": ((1, 2, 3),)}


def test_when_nothing_is_contiguous_the_most_compact_set_wins() -> None:
    result = run([job("q", gpus=3)], held([2, 5, 6]))
    assert admitted(result) == {"q": ((0, 1, 3),)}


def test_each_node_of_a_gang_gets_its_own_block() -> None:
    result = run([job("q", gpus=2, nodes=2)], held([0]))
    assert admitted(result) == {"q": ((1, 2), (3, 4))}


def test_several_jobs_in_one_plan_pack_tightly() -> None:
    queued = [job("one", gpus=1, created=1), job("two", gpus=2, created=2)]
    result = run(queued, box=machine(gpus=4))
    assert admitted(result) == {"one": ((0,),), "two": ((1, 2),)}


def test_model_match_is_a_case_insensitive_substring() -> None:
    box = machine(models="AAAAHHHH")
    result = run([job("q", gpus=2, model="h100")], held([4]), box=box)
    assert admitted(result) == {"q": ((5, 6),)}
    result = run([job("q", gpus=4, model="a100")], held([0]), box=box)
    assert result.pending["q"].reason == (
        "waiting for 4 × nvidia.com/gpu (a100), 3 free; no jobs ahead"
    )


# --- reservation and backfill -------------------------------------------------------------


def backfill_scene() -> tuple[list[Job], list[Job]]:
    """8 GPUs, 6 held by ``r`` until 1100; the head ``h`` needs all 8 (T = 1100)."""
    running = [job("r", gpus=6, cpu=6, devices=[range(6)], started=100, max_runtime=1000)]
    queued = [
        job("h", gpus=8, cpu=8, priority=10, created=0, max_runtime=500),
        job("long", gpus=2, created=1, max_runtime=500),
        job("unbounded", gpus=2, created=2),
        job("short", gpus=2, created=3, max_runtime=100),
        job("cpu-only", cpu=4, created=4),
    ]
    return queued, running


def test_backfill_never_delays_the_head() -> None:
    queued, running = backfill_scene()
    result = run(queued, running)
    # short ends at 1100 = T; cpu-only leaves 32 - 6 - 4 >= 8 CPUs for the head
    assert admitted(result) == {"short": ((6, 7),), "cpu-only": ((),)}
    pending = result.pending
    assert pending["h"] == Pending(
        1,
        "waiting for 8 × nvidia.com/gpu, 0 free; no jobs ahead",
        WAIT_CAPACITY,
        1100.0,
        "max runtime of 2 running jobs",
    )
    assert pending["long"] == Pending(
        2,
        "waiting for 2 × nvidia.com/gpu, 0 free; 1 job ahead",
        WAIT_CAPACITY,
        1600.0,
        "max runtime of 3 jobs",
    )
    assert pending["unbounded"].position == 3
    assert pending["unbounded"].eta == 1600.0


def test_a_job_that_fits_now_but_would_delay_the_head_says_so() -> None:
    queued, running = backfill_scene()
    result = run(queued[:3], running)
    assert result.admit == ()
    assert result.pending["long"].reason == (
        "waiting for 2 × nvidia.com/gpu, 2 free but reserved for job h; 1 job ahead"
    )


def test_a_long_job_may_backfill_when_what_is_left_at_T_still_covers_the_head() -> None:
    running = [job("r", gpus=6, devices=[range(6)], started=100, max_runtime=1000)]
    queued = [job("h", gpus=4, priority=1, max_runtime=10), job("long", gpus=2, created=1)]
    result = run(queued, running)
    assert admitted(result) == {"long": ((6, 7),)}
    assert result.pending["h"].eta == 1100.0


def test_unknown_T_allows_only_jobs_on_resources_the_head_does_not_need() -> None:
    running = [job("r", gpus=6, cpu=6, devices=[range(6)], started=100)]  # no max runtime
    queued = [
        job("h", gpus=8, cpu=8, priority=10, max_runtime=500),
        job("short", gpus=2, created=1, max_runtime=1),
        job("cpu-only", cpu=10, created=2),
        job("cpu-greedy", cpu=10, created=3),
    ]
    result = run(queued, running)
    # 32 - 6 = 26 CPUs free: after cpu-only 16 are left, cpu-greedy would leave 6 < 8.
    assert admitted(result) == {"cpu-only": ((),)}
    assert result.pending["h"] == Pending(
        1,
        "waiting for 8 × nvidia.com/gpu, 2 free; no jobs ahead",
        WAIT_CAPACITY,
        None,
        "unknown: running job r has no max runtime and no history",
    )
    assert result.pending["short"].reason == (
        "waiting for 2 × nvidia.com/gpu, 2 free but reserved for job h; 1 job ahead"
    )
    assert result.pending["short"].eta is None
    assert result.pending["short"].eta_basis == (
        "unknown: waits for job h ahead, whose start is unknown"
    )
    assert result.pending["cpu-greedy"].eta_basis == (
        "unknown: waits for job h ahead, whose start is unknown"
    )


def test_observed_durations_give_T_when_there_is_no_max_runtime() -> None:
    running = [job(f"r{i}", gpus=1, devices=[[i]], started=float(i)) for i in range(3)]
    queued = [job("h", gpus=4), job("one", gpus=1, created=1)]
    result = run(queued, running, box=machine(gpus=4), durations={"gpu": 42.0})
    assert result.admit == ()
    assert result.pending["h"] == Pending(
        1,
        "waiting for 4 × nvidia.com/gpu, 1 free; no jobs ahead",
        WAIT_CAPACITY,
        1000.0,  # they all ran past their median: expected to end now, not in the past
        "observed durations (median 42 s) of 3 jobs",
    )


def test_eta_chains_through_the_jobs_ahead() -> None:
    running = [job(f"r{i}", gpus=1, devices=[[i]], started=990.0 + i) for i in range(3)]
    queued = [job("h", gpus=4), job("one", gpus=1, created=1)]
    result = run(queued, running, box=machine(gpus=4), durations={"gpu": 42.0})
    assert result.pending["h"].eta == 1034.0
    assert result.pending["h"].eta_basis == "observed durations (median 42 s) of 3 jobs"
    assert result.pending["one"] == Pending(
        2,
        "waiting for 1 × nvidia.com/gpu, 1 free but reserved for job h; 1 job ahead",
        WAIT_CAPACITY,
        1076.0,
        "observed durations (median 42 s) of 4 jobs",
    )


# --- preemption ---------------------------------------------------------------------------


def preemption_scene() -> list[Job]:
    return [
        job("old-low", gpus=2, devices=[[0, 1]], priority=0, started=10),
        job("new-low", gpus=2, devices=[[2, 3]], priority=0, started=20),
        job("mid", gpus=2, devices=[[4, 5]], priority=5, started=30),
        job("peer", gpus=2, devices=[[6, 7]], priority=10, started=40),
    ]


def test_preemption_is_off_by_default() -> None:
    result = run([job("urgent", gpus=2, priority=10)], preemption_scene())
    assert result.preempt == ()
    assert result.pending["urgent"].reason == (
        "waiting for 2 × nvidia.com/gpu, 0 free; no jobs ahead"
    )


def test_preemption_takes_the_lowest_priority_newest_job() -> None:
    result = run([job("urgent", gpus=2, priority=10)], preemption_scene(), preemption=True)
    assert result.preempt == (("new-low", "urgent"),)
    assert result.admit == ()
    assert result.pending["urgent"] == Pending(
        1,
        "preempting 1 lower-priority job (new-low) for 2 × nvidia.com/gpu; no jobs ahead",
        WAIT_CAPACITY,
        NOW,
        "release of 1 preempted job",
    )


def test_preemption_goes_up_in_priority_only_when_needed() -> None:
    result = run([job("urgent", gpus=6, priority=10)], preemption_scene(), preemption=True)
    assert result.preempt == (("new-low", "urgent"), ("old-low", "urgent"), ("mid", "urgent"))


def test_preemption_prefers_fewer_victims() -> None:
    running = [
        job("tiny", gpus=1, devices=[[0]], priority=0, started=50),
        job("big", gpus=4, devices=[[1, 2, 3, 4]], priority=0, started=10),
        job("peer", gpus=3, devices=[[5, 6, 7]], priority=5, started=10),
    ]
    result = run([job("urgent", gpus=4, priority=5)], running, preemption=True)
    assert result.preempt == (("big", "urgent"),)


def test_equal_priority_is_never_preempted() -> None:
    running = [job("peer", gpus=8, devices=[range(8)], priority=10, started=10)]
    result = run([job("urgent", gpus=2, priority=10)], running, preemption=True)
    assert result.preempt == ()
    assert result.pending["urgent"].eta_basis == (
        "unknown: running job peer has no max runtime and no history"
    )


def test_the_preemptor_reserves_what_the_victims_release() -> None:
    running = [job("low", gpus=4, devices=[[0, 1, 2, 3]], priority=0, started=10)]
    queued = [
        job("urgent", gpus=8, priority=10),
        job("small", gpus=2, created=1, max_runtime=10),
        job("cpu", created=2),
    ]
    result = run(queued, running, preemption=True)
    assert result.preempt == (("low", "urgent"),)
    assert admitted(result) == {"cpu": ((),)}
    assert result.pending["small"].reason == (
        "waiting for 2 × nvidia.com/gpu, 4 free but reserved for job urgent; 1 job ahead"
    )


# --- leases -------------------------------------------------------------------------------


def test_kernel_leases_hold_devices_cpus_and_memory() -> None:
    lease = Allocation("kernel:k1", "carol", "gpu", cpu=28, memory_bytes=Gi, devices=(0, 1))
    queued = [job("two", gpus=2, cpu=4), job("all", gpus=8, cpu=1, created=1)]
    result = run(queued, leases=[lease])
    assert admitted(result) == {"two": ((2, 3),)}
    assert result.pending["all"] == Pending(
        1,
        "waiting for 8 × nvidia.com/gpu, 4 free; no jobs ahead",
        WAIT_CAPACITY,
        None,
        "unknown: kernel:k1 holds what it needs, with no end",
    )
    result = run([job("cpus", cpu=5)], leases=[lease])
    assert result.pending["cpus"].reason == "waiting for 5 CPUs, 4 free; no jobs ahead"


# --- jobs that can never fit --------------------------------------------------------------


def test_refusal_names_what_can_never_fit() -> None:
    box = machine(gpus=8, cpus=32, memory=256 * Gi, models="AAAAHHHH")
    unlimited = Quota()
    cases = {
        "needs 9 × nvidia.com/gpu; this machine has 8": job("j", gpus=9),
        "needs 10 × nvidia.com/gpu (2 nodes); this machine has 8": job("j", gpus=5, nodes=2),
        "needs 6 × nvidia.com/gpu (H100); this machine has 4": job("j", gpus=6, model="H100"),
        "needs 1 × nvidia.com/gpu (B200); this machine has no matching device": job(
            "j", gpus=1, model="B200"
        ),
        "needs 40 CPUs (2 nodes); this machine has 32": job("j", cpu=20, nodes=2),
        "needs 512Gi memory; this machine has 256Gi": job("j", memory=512 * Gi),
    }
    for message, impossible in cases.items():
        assert refusal(impossible, box, unlimited, max_nodes=4) == message
    assert refusal(job("j", nodes=3), box, unlimited, max_nodes=2) == (
        "asks for 3 nodes; the flavor allows at most 2"
    )
    assert refusal(job("j", gpus=4), box, Quota(max_gpus=2), max_nodes=4) == (
        "needs 4 GPUs; the user quota allows 2"
    )
    assert refusal(job("j"), box, Quota(max_running_jobs=0), max_nodes=4) == (
        "the user quota allows no running jobs"
    )
    assert refusal(job("j", gpus=2, nodes=2, model="a100"), box, Quota(max_gpus=8), 2) is None


def test_a_queued_job_that_can_never_fit_does_not_block_the_queue() -> None:
    queued = [
        job("huge", gpus=16, priority=10),
        job("greedy", gpus=4, priority=5, owner="bob"),
        job("fine", gpus=2),
    ]
    result = run(queued, quotas={"bob": Quota(max_gpus=2)})
    assert admitted(result) == {"fine": ((0, 1),)}
    assert result.pending["huge"] == Pending(
        1,
        "can never start: needs 16 × nvidia.com/gpu; this machine has 8",
        PendingReason.NO_MATCHING_FLAVOR,
        None,
        "never",
    )
    assert result.pending["greedy"].code is PendingReason.EXCEEDS_MAX_QUOTA
    assert (
        result.pending["greedy"].reason == "can never start: needs 4 GPUs; the user quota allows 2"
    )
