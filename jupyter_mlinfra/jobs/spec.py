"""What a job is: the submission a user sends, and the job record every surface shows.

Pure. A submission's wire model is ``models.jobs.JobSubmission``; ``jobs/submission.py`` makes
it a ``JobSpec``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal

from ..catalog import Flavor
from ..errors import Conflict, NotAllowed

if TYPE_CHECKING:
    from ..models import jobs as wire

JobStateName = Literal[
    "queued", "admitted", "starting", "running", "succeeded", "failed", "cancelled", "preempted"
]
"""A state as the API writes it: ``JobState``'s values (mypy checks that ``Job.to_json`` writes
one of these; tests/test_models.py that every state is one)."""


class JobState(str, Enum):
    QUEUED = "queued"
    ADMITTED = "admitted"
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PREEMPTED = "preempted"

    @property
    def finished(self) -> bool:
        return self in FINISHED

    @property
    def holds_resources(self) -> bool:
        """Admitted, starting and running jobs hold their devices, CPUs and memory."""
        return self in (JobState.ADMITTED, JobState.STARTING, JobState.RUNNING)


FINISHED = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.PREEMPTED})


ConditionName = Literal[
    "Queued", "QuotaReserved", "Admitted", "Started", "Evicted", "Preempted", "Requeued", "Finished"
]
"""A condition as the API writes it: ``Condition``'s values."""


class Condition(str, Enum):
    """Kueue's workload condition types, used as the event types of a job's history."""

    QUEUED = "Queued"
    QUOTA_RESERVED = "QuotaReserved"
    ADMITTED = "Admitted"
    STARTED = "Started"
    EVICTED = "Evicted"
    PREEMPTED = "Preempted"
    REQUEUED = "Requeued"
    FINISHED = "Finished"


class PendingReason(str, Enum):
    """Why a queued job waits, in Kueue's words."""

    WAITING_FOR_QUOTA = "WaitingForQuota"
    """Its owner's quota is used up by their other jobs; it starts when they finish."""
    WAITING_FOR_CAPACITY = "WaitingForCapacity"
    """Not enough free devices, CPUs or memory now; others are ahead or running."""
    EXCEEDS_MAX_QUOTA = "ExceedsMaxQuota"
    NO_MATCHING_FLAVOR = "NoMatchingFlavor"


@dataclass(frozen=True)
class RetryPolicy:
    max_restarts: int = 0
    on_exit_codes: tuple[int, ...] = ()
    """Exit codes that are retried; empty means any non-zero exit."""

    def retries(self, exit_code: int | None, restarts_so_far: int) -> bool:
        if restarts_so_far >= self.max_restarts or exit_code == 0:
            return False
        return not self.on_exit_codes or exit_code in self.on_exit_codes


@dataclass(frozen=True)
class JobSpec:
    """A submission, validated. ``flavor``/``environment`` empty means the caller's default;
    ``procs_per_node`` 0 (left out of the submission) means one per accelerator of the
    flavor, else 1."""

    name: str = ""
    code: str = ""
    script: str = ""
    source: str = ""
    """The script's text, for backends whose nodes cannot read ``script`` (a cluster's pods
    have none of the client's files): the job then runs a copy of it, named as it."""
    args: tuple[str, ...] = ()
    flavor: str = ""
    environment: str = ""
    nodes: int = 1
    procs_per_node: int = 0
    env: Mapping[str, str] = field(default_factory=dict)
    priority: str = ""
    queue: str = "default"
    max_runtime_seconds: float | None = None
    retry: RetryPolicy = RetryPolicy()
    push: Mapping[str, str] = field(default_factory=dict)
    """Variables for the job: name -> base64 of their cloudpickle, made by the client."""
    pull: tuple[str, ...] = ()
    """Variables rank 0 sends back when the job succeeds."""
    working_dir: str = ""
    idempotency_key: str = ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["args"] = list(self.args)
        data["pull"] = list(self.pull)
        data["retry"] = {
            "max_restarts": self.retry.max_restarts,
            "on_exit_codes": list(self.retry.on_exit_codes),
        }
        data["env"] = dict(self.env)
        data["push"] = dict(self.push)
        return data


MAX_NODES = 64
MAX_PROCS_PER_NODE = 256
MAX_CODE_CHARACTERS = 1_000_000
MAX_RUNTIME_SECONDS = 1e9
"""About 31 years: any longer is no limit, and a cluster takes the number as a whole one."""


@dataclass(frozen=True)
class RequestLimits:
    """How large a request body may be, and the parts of a submission that reach a process or
    stay in the agent's memory (``MLInfraApp.max_request_bytes``, ``max_push_bytes``,
    ``max_env_bytes``, ``max_args_bytes``), in UTF-8 bytes."""

    max_request_bytes: int = 64 * 1024 * 1024
    max_push_bytes: int = 32 * 1024 * 1024
    max_env_bytes: int = 64 * 1024
    max_args_bytes: int = 64 * 1024


@dataclass(frozen=True)
class Resources:
    """What one node of a job (or one kernel) holds: the flavor's share, resolved."""

    cpu: float
    memory_bytes: int
    accelerators: int
    accelerator_kind: str = ""
    accelerator_model: str = ""

    @classmethod
    def of(cls, flavor: Flavor) -> Resources:
        """One node of ``flavor``, as admitted now (the catalog may change later)."""
        accelerator = flavor.accelerator
        return cls(
            cpu=flavor.cpu,
            memory_bytes=flavor.memory_bytes,
            accelerators=flavor.accelerators,
            accelerator_kind=accelerator.kind if accelerator else "",
            accelerator_model=accelerator.model if accelerator else "",
        )

    def running(self, procs: int) -> Resources:
        """This node's share when it runs ``procs`` processes. A flavor is sized for one process
        per accelerator (or one, without). A node that runs more holds a CPU for each process
        (a flavor of less than one CPU: that much for each), or the flavor's CPUs if more: the
        processes share the flavor's CPUs, and every one beyond them is counted."""
        if procs <= max(1, self.accelerators):
            return self
        return replace(self, cpu=max(self.cpu, procs * min(1.0, self.cpu)))


@dataclass(frozen=True)
class Job:
    """A job as stored and shown: its spec plus everything that happened to it."""

    id: str
    owner: str
    spec: JobSpec
    priority_value: int
    node: Resources
    """Resources of one node, resolved from the flavor at submission (flavors may change)."""
    state: JobState = JobState.QUEUED
    reason: str = ""
    created: float = 0.0
    admitted: float | None = None
    started: float | None = None
    finished: float | None = None
    exit_code: int | None = None
    attempt: int = 1
    devices: tuple[tuple[int, ...], ...] = ()
    """Device indices assigned per node while admitted."""
    position: int | None = None
    eta: float | None = None
    eta_basis: str = ""
    message: str = ""
    """The failing rank's traceback or the cause of a failure, for people."""
    not_before: float | None = None
    """A requeued job waits out its backoff until then before admission."""

    @property
    def gpus(self) -> int:
        return self.node.accelerators * self.spec.nodes

    def to_json(self) -> wire.Job:
        spec = self.spec
        return {
            "id": self.id,
            "name": spec.name,
            "owner": self.owner,
            "state": self.state.value,
            "reason": self.reason,
            "position": self.position,
            "eta": self.eta,
            "eta_basis": self.eta_basis,
            "flavor": spec.flavor,
            "environment": spec.environment,
            "nodes": spec.nodes,
            "procs_per_node": spec.procs_per_node,
            "priority": spec.priority,
            "queue": spec.queue,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "exit_code": self.exit_code,
            "attempt": self.attempt,
            "devices": [list(d) for d in self.devices],
            "message": self.message,
        }


def check_pull(job: Job, user: str) -> None:
    """Refuse ``user`` the job's pulled variables unless they are its owner and it succeeded.
    The variables are a pickle, and loading one runs whatever code its writer put in it: an
    admin (or anybody) who loaded a user's would run that user's code with their own rights."""
    if user != job.owner:
        raise NotAllowed(
            f"job {job.id} is {job.owner}'s: only they may pull its results, which are pickles "
            "(loading one runs code of whoever wrote it); its logs and events show how it went",
            "id",
        )
    if job.state != JobState.SUCCEEDED:
        raise Conflict(f"job {job.id} is {job.state.value}; results exist once it succeeded", "id")


@dataclass(frozen=True)
class Event:
    """One transition or condition in a job's history, in Kueue's vocabulary."""

    job_id: str
    time: float
    condition: Condition
    reason: str = ""
    message: str = ""

    def to_json(self) -> wire.Event:
        return {
            "time": self.time,
            "condition": self.condition.value,
            "reason": self.reason,
            "message": self.message,
        }
