"""What a job is: the submission a user sends, and the job record every surface shows.

Pure. ``parse_submission`` turns untrusted JSON into a ``JobSpec`` or raises ``InvalidInput``
naming the field; it knows nothing of the catalog (the service resolves flavor and environment
names and defaults against it, for the caller's identity).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from ..catalog import Flavor
from ..errors import Conflict, InvalidInput, NotAllowed


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


SUBMISSION_FIELDS = (
    "name", "code", "script", "args", "flavor", "environment", "nodes", "procs_per_node", "env",
    "priority", "queue", "max_runtime_seconds", "retry", "push", "pull", "working_dir",
    "idempotency_key",
)  # fmt: skip

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def _bad(name: str, message: str) -> InvalidInput:
    return InvalidInput(f"{name}: {message}", name)


def _string(body: Mapping[str, Any], name: str, limit: int = 1024) -> str:
    value = body.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad(name, f"must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise _bad(name, f"must be at most {limit} characters, got {len(value)}")
    return value


def _whole(body: Mapping[str, Any], name: str, default: int, minimum: int, maximum: int) -> int:
    value = body.get(name)
    if value is None:  # left out: the default, which may lie outside what may be given
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(name, f"must be a whole number, got {value!r}")
    if not minimum <= value <= maximum:
        raise _bad(name, f"must be between {minimum} and {maximum}, got {value}")
    return value


def _names(body: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = body.get(name) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(name, "must be a list of variable names")
    for item in value:
        if not _IDENTIFIER.match(item):
            raise _bad(name, f"{item!r} is not a Python variable name")
    return tuple(value)


def _retry(body: Mapping[str, Any]) -> RetryPolicy:
    value = body.get("retry") or {}
    if not isinstance(value, Mapping):
        raise _bad("retry", "must be an object with max_restarts and on_exit_codes")
    unknown = set(value) - {"max_restarts", "on_exit_codes"}
    if unknown:
        raise _bad(
            f"retry.{sorted(unknown)[0]}", "unknown field; known: max_restarts, on_exit_codes"
        )
    max_restarts = _whole(value, "max_restarts", 0, 0, 100)
    codes = value.get("on_exit_codes") or []
    if not isinstance(codes, list) or not all(
        isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in codes
    ):
        raise _bad("retry.on_exit_codes", "must be a list of exit codes between 0 and 255")
    return RetryPolicy(max_restarts=max_restarts, on_exit_codes=tuple(codes))


def parse_submission(body: Any) -> JobSpec:
    """A JobSpec from a request body; unknown fields and malformed values are 400s."""
    if not isinstance(body, Mapping):
        raise InvalidInput("the request body must be a JSON object", None)
    for key in body:
        if key not in SUBMISSION_FIELDS:
            raise _bad(str(key), f"unknown field; known fields: {', '.join(SUBMISSION_FIELDS)}")
    code, script = _string(body, "code", 1_000_000), _string(body, "script", 4096)
    if bool(code) == bool(script):
        raise InvalidInput("give exactly one of code (a cell) or script (a path)", "code")
    args = body.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise _bad("args", "must be a list of strings")
    if args and not script:
        raise _bad("args", "only a script takes arguments")
    env = body.get("env") or {}
    if not isinstance(env, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise _bad("env", "must be an object of strings")
    for key in env:
        if not _ENV_NAME.match(key):
            raise _bad("env", f"{key!r} is not an environment variable name")
    push = body.get("push") or {}
    if not isinstance(push, Mapping) or not all(
        _IDENTIFIER.match(str(k)) and isinstance(v, str) for k, v in push.items()
    ):
        raise _bad("push", "must be an object of variable name -> base64 cloudpickle")
    max_runtime = body.get("max_runtime_seconds")
    if max_runtime is not None and (
        isinstance(max_runtime, bool)
        or not isinstance(max_runtime, int | float)
        or not math.isfinite(max_runtime)
        or max_runtime <= 0
    ):
        raise _bad("max_runtime_seconds", f"must be a number of seconds > 0, got {max_runtime!r}")
    for label in ("name", "queue", "priority", "flavor", "environment"):
        text = _string(body, label, 63)
        if text and not _LABEL.match(text):
            raise _bad(label, f"must be letters, digits, '.', '_' or '-', got {text!r}")
    return JobSpec(
        name=_string(body, "name", 63),
        code=code,
        script=script,
        args=tuple(args),
        flavor=_string(body, "flavor", 63),
        environment=_string(body, "environment", 63),
        nodes=_whole(body, "nodes", 1, 1, 64),
        # absent or null: one per accelerator (0 below); a number given must be a real count
        procs_per_node=_whole(body, "procs_per_node", 0, 1, 256),
        env=dict(env),
        priority=_string(body, "priority", 63),
        queue=_string(body, "queue", 63) or "default",
        max_runtime_seconds=None if max_runtime is None else float(max_runtime),
        retry=_retry(body),
        push=dict(push),
        pull=_names(body, "pull"),
        working_dir=_string(body, "working_dir", 4096),
        idempotency_key=_string(body, "idempotency_key", 255),
    )


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

    def to_json(self) -> dict[str, Any]:
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

    def to_json(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "condition": self.condition.value,
            "reason": self.reason,
            "message": self.message,
        }
