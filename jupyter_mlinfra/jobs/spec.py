"""What a job is: the submission a user sends, and the job record every surface shows.

Pure. ``parse_submission`` turns untrusted JSON into a ``JobSpec`` or raises ``InvalidInput``
naming the field; it knows nothing of the catalog (the service resolves flavor and environment
names and defaults against it, for the caller's identity).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from typing import Any

from ..catalog import Flavor
from ..errors import Conflict, InvalidInput, NotAllowed, TooLarge, shown


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


SUBMISSION_FIELDS = (
    "name", "code", "script", "source", "args", "flavor", "environment", "nodes", "procs_per_node",
    "env", "priority", "queue", "max_runtime_seconds", "retry", "push", "pull", "working_dir",
    "idempotency_key",
)  # fmt: skip

MAX_NODES = 64
MAX_PROCS_PER_NODE = 256
MAX_CODE_CHARACTERS = 1_000_000
MAX_RUNTIME_SECONDS = 1e9
"""About 31 years: any longer is no limit, and a cluster takes the number as a whole one."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


@dataclass(frozen=True)
class RequestLimits:
    """How large a request body may be, and the parts of a submission that reach a process or
    stay in the agent's memory (``MLInfraApp.max_request_bytes``, ``max_push_bytes``,
    ``max_env_bytes``, ``max_args_bytes``), in UTF-8 bytes."""

    max_request_bytes: int = 64 * 1024 * 1024
    max_push_bytes: int = 32 * 1024 * 1024
    max_env_bytes: int = 64 * 1024
    max_args_bytes: int = 64 * 1024


def _bad(name: str, message: str) -> InvalidInput:
    return InvalidInput(f"{name}: {message}", name)


def _too_large(name: str, size: int, limit: int, setting: str) -> TooLarge:
    return TooLarge(
        f"{name}: {size} bytes, more than the limit of {limit} (MLInfraApp.{setting})", name
    )


def _given(body: Mapping[str, Any], name: str, default: Any) -> Any:
    """The field's value; ``default`` when it is absent or null (clients send null for
    "not set")."""
    value = body.get(name)
    return default if value is None else value


def _string(body: Mapping[str, Any], name: str, limit: int = 1024) -> str:
    value = _given(body, name, "")
    if not isinstance(value, str):
        raise _bad(name, f"must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise _bad(name, f"must be at most {limit} characters, got {len(value)}")
    return value


def parse_label(body: Mapping[str, Any], name: str) -> str:
    """A name such as a flavor's or a priority class's: at most 63 letters, digits, '.', '_'
    or '-' (empty: not given), so no message or lookup ever carries more than that."""
    text = _string(body, name, 63)
    if text and not _LABEL.fullmatch(text):
        raise _bad(name, f"must be letters, digits, '.', '_' or '-', got {shown(text)}")
    return text


def _os_string(body: Mapping[str, Any], name: str, limit: int) -> str:
    """A string that becomes part of a process (a path): no NUL, which no OS call takes."""
    value = _string(body, name, limit)
    if "\0" in value:
        raise _bad(name, "must not contain a NUL character")
    return value


def _whole(
    body: Mapping[str, Any], name: str, default: int, minimum: int, maximum: int, within: str = ""
) -> int:
    """A whole number between ``minimum`` and ``maximum``; ``within`` names the object that
    holds it, for the error ("retry.max_restarts"). Left out or null: ``default``, which may
    lie outside what may be given (procs_per_node's 0: one per accelerator)."""
    value = body.get(name)
    if value is None:
        return default
    field = f"{within}.{name}" if within else name
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(field, f"must be a whole number, got {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise _bad(field, f"must be between {minimum} and {maximum}, got {value}")
    return value


def _names(body: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = _given(body, name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _bad(name, "must be a list of variable names")
    for item in value:
        if not _IDENTIFIER.fullmatch(item):
            raise _bad(name, f"{shown(item)} is not a Python variable name")
    return tuple(value)


def _args(body: Mapping[str, Any], limits: RequestLimits) -> tuple[str, ...]:
    args = _given(body, "args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise _bad("args", "must be a list of strings")
    if any("\0" in a for a in args):
        raise _bad("args", "must not contain a NUL character")
    size = sum(len(a.encode()) + 1 for a in args)
    if size > limits.max_args_bytes:
        raise _too_large("args", size, limits.max_args_bytes, "max_args_bytes")
    return tuple(args)


def _env(body: Mapping[str, Any], limits: RequestLimits) -> dict[str, str]:
    env = _given(body, "env", {})
    if not isinstance(env, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise _bad("env", "must be an object of strings")
    for key, value in env.items():
        if not _ENV_NAME.fullmatch(key):
            raise _bad("env", f"{shown(key)} is not an environment variable name")
        if "\0" in value:
            raise _bad("env", f"{key}: must not contain a NUL character")
    size = sum(len(k.encode()) + len(v.encode()) + 2 for k, v in env.items())
    if size > limits.max_env_bytes:
        raise _too_large("env", size, limits.max_env_bytes, "max_env_bytes")
    return dict(env)


def _push(body: Mapping[str, Any], limits: RequestLimits) -> dict[str, str]:
    push = _given(body, "push", {})
    problem = "must be an object of variable name -> base64 cloudpickle"
    if not isinstance(push, Mapping) or not all(isinstance(v, str) for v in push.values()):
        raise _bad("push", problem)
    size = sum(len(v) for v in push.values())  # base64: one byte per character
    if size > limits.max_push_bytes:
        raise _too_large("push", size, limits.max_push_bytes, "max_push_bytes")
    for key, value in push.items():
        if not _IDENTIFIER.fullmatch(key):
            raise _bad("push", f"{shown(key)} is not a Python variable name")
        if len(value) % 4 or not _BASE64.fullmatch(value):
            raise _bad("push", f"{key}: not base64")
    return dict(push)


def _retry(body: Mapping[str, Any]) -> RetryPolicy:
    value = _given(body, "retry", {})
    if not isinstance(value, Mapping):
        raise _bad("retry", "must be an object with max_restarts and on_exit_codes")
    unknown = set(value) - {"max_restarts", "on_exit_codes"}
    if unknown:
        raise _bad(
            f"retry.{sorted(unknown)[0]}", "unknown field; known: max_restarts, on_exit_codes"
        )
    max_restarts = _whole(value, "max_restarts", 0, 0, 100, within="retry")
    codes = _given(value, "on_exit_codes", [])
    if not isinstance(codes, list) or not all(
        isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in codes
    ):
        raise _bad("retry.on_exit_codes", "must be a list of exit codes between 0 and 255")
    return RetryPolicy(max_restarts=max_restarts, on_exit_codes=tuple(codes))


def _max_runtime(body: Mapping[str, Any]) -> float | None:
    value = body.get("max_runtime_seconds")
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= MAX_RUNTIME_SECONDS
    ):
        raise _bad(
            "max_runtime_seconds",
            f"must be a number of seconds > 0 and <= {MAX_RUNTIME_SECONDS:.0f}",
        )
    return float(value)


def parse_submission(body: Any, limits: RequestLimits = RequestLimits()) -> JobSpec:
    """A JobSpec from a request body; unknown fields and malformed values are 400s, parts
    over ``limits`` 413s, each naming the field."""
    if not isinstance(body, Mapping):
        raise InvalidInput("the request body must be a JSON object", None)
    for key in body:
        if key not in SUBMISSION_FIELDS:
            known = ", ".join(SUBMISSION_FIELDS)
            raise InvalidInput(
                f"{shown(str(key))}: unknown field; known fields: {known}", str(key)[:64]
            )
    code = _string(body, "code", MAX_CODE_CHARACTERS)
    script = _os_string(body, "script", 4096)
    if bool(code) == bool(script):
        raise InvalidInput("give exactly one of code (a cell) or script (a path)", "code")
    source = _string(body, "source", MAX_CODE_CHARACTERS)
    if source and not script:
        raise _bad("source", "only a script has a source (the text of the script)")
    args = _args(body, limits)
    if args and not script:
        raise _bad("args", "only a script takes arguments")
    for label in ("name", "queue", "priority", "flavor", "environment"):
        parse_label(body, label)
    return JobSpec(
        name=_string(body, "name", 63),
        code=code,
        script=script,
        source=source,
        args=args,
        flavor=_string(body, "flavor", 63),
        environment=_string(body, "environment", 63),
        nodes=_whole(body, "nodes", 1, 1, MAX_NODES),
        # absent or null: one per accelerator (0 below); a number given must be a real count
        procs_per_node=_whole(body, "procs_per_node", 0, 1, MAX_PROCS_PER_NODE),
        env=_env(body, limits),
        priority=_string(body, "priority", 63),
        queue=_string(body, "queue", 63) or "default",
        max_runtime_seconds=_max_runtime(body),
        retry=_retry(body),
        push=_push(body, limits),
        pull=_names(body, "pull"),
        working_dir=_os_string(body, "working_dir", 4096),
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
