"""The catalog: which flavors (hardware shapes) and environments (software stacks) exist, and
who may use them.

Pure: built from plain dicts (traitlets config or a YAML file) and validated all at once, so an
admin sees every mistake in one go, each with the exact place it is in (``flavors[2]
'a100x4': accelerator.count must be >= 0, got -1``).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import CatalogError, InvalidInput, NotAllowed, NotFound, shown
from .identity import Identity
from .quantities import format_cpu, format_memory, parse_cpu, parse_memory
from .volumes import Volume, parse_volumes

if TYPE_CHECKING:
    from .models import catalog as wire

FRAMEWORKS = ("pytorch", "tensorflow", "jax", "generic")
FLEX_START = "flex-start"
"""Capacity provisioned for each job when it is admitted (a ProvisioningRequest under Kueue)."""
CAPACITY_TYPES = ("on-demand", "spot", "reserved", FLEX_START)
LAUNCHERS = ("process", "torchrun")


@dataclass(frozen=True)
class Accelerator:
    kind: str
    """Extended resource name, as Kubernetes spells it: ``nvidia.com/gpu``, ``amd.com/gpu``."""
    model: str
    """Product name matched against the devices found (``H100``); empty matches any model."""
    count: int

    def matches(self, kind: str, model: str) -> bool:
        return kind == self.kind and (not self.model or self.model.lower() in model.lower())

    def to_json(self) -> wire.Accelerator:
        return {"kind": self.kind, "model": self.model, "count": self.count}


@dataclass(frozen=True)
class Entitlement:
    """Who may use an entry: nobody listed means everybody; admins may use everything."""

    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()

    def allows(self, identity: Identity) -> bool:
        if identity.admin or not (self.users or self.groups):
            return True
        return identity.user in self.users or bool(identity.groups & self.groups)


@dataclass(frozen=True)
class Flavor:
    name: str
    display_name: str
    cpu: float
    memory_bytes: int
    accelerator: Accelerator | None = None
    description: str = ""
    capacity_type: str = "on-demand"
    price_per_hour: float | None = None
    max_nodes: int = 1
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    volumes: tuple[Volume, ...] = ()
    """Volumes its kernels and jobs get (scratch disks, a dataset near its nodes)."""
    allowed: Entitlement = Entitlement()

    @property
    def accelerators(self) -> int:
        return self.accelerator.count if self.accelerator else 0

    def to_json(self) -> wire.FlavorEntry:
        return {
            "name": self.name,
            "display_name": self.display_name,
            "description": self.description,
            "accelerator": self.accelerator.to_json() if self.accelerator else None,
            "cpu": self.cpu,
            "memory": format_memory(self.memory_bytes),
            "memory_bytes": self.memory_bytes,
            "capacity_type": self.capacity_type,
            "price_per_hour": self.price_per_hour,
            "max_nodes": self.max_nodes,
            "node_selector": dict(self.node_selector),
            "tolerations": [dict(t) for t in self.tolerations],
            "volumes": [v.to_json() for v in self.volumes],
        }


@dataclass(frozen=True)
class Environment:
    name: str
    display_name: str
    framework: str = "generic"
    image: str = ""
    """Container image for the Kubernetes backend; unused by the local backend."""
    python: str = ""
    """The interpreter: on the local backend a path or a name on PATH, empty meaning this
    server's; on Kubernetes the image's (a name on its PATH or a path), empty meaning
    ``python3``."""
    launcher: str = "process"
    """``process``: one process per rank with the rank contract; ``torchrun``: one per node."""
    description: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    volumes: tuple[Volume, ...] = ()
    """Volumes its kernels and jobs get (datasets, shared storage), at their mount paths."""
    allowed: Entitlement = Entitlement()

    def to_json(self) -> wire.EnvironmentEntry:
        return {
            "name": self.name,
            "display_name": self.display_name,
            "description": self.description,
            "framework": self.framework,
            "image": self.image,
            "python": self.python,
            "launcher": self.launcher,
            "env": dict(self.env),
            "volumes": [v.to_json() for v in self.volumes],
        }


Entry = TypeVar("Entry", Flavor, Environment)


def _lookup(what: str, entries: tuple[Entry, ...], name: str, identity: Identity | None) -> Entry:
    for entry in entries:
        if entry.name == name:
            if identity is not None and not entry.allowed.allows(identity):
                raise NotAllowed(f"user {identity.user!r} may not use {what} {name!r}", what)
            return entry
    usable = [e for e in entries if identity is None or e.allowed.allows(identity)]
    names = ", ".join(e.name for e in usable) or "none"
    raise NotFound(f"unknown {what} {shown(name, 63)} (known: {names})", what)


def _default_among(preferred: str, entries: tuple[Any, ...]) -> str:
    if any(e.name == preferred for e in entries):
        return preferred
    return entries[0].name if entries else ""


@dataclass(frozen=True)
class Catalog:
    flavors: tuple[Flavor, ...]
    environments: tuple[Environment, ...]
    default_flavor: str
    default_environment: str

    def flavor(self, name: str, identity: Identity | None = None) -> Flavor:
        """The named flavor; 404 if unknown, 403 if ``identity`` may not use it."""
        return _lookup("flavor", self.flavors, name, identity)

    def environment(self, name: str, identity: Identity | None = None) -> Environment:
        return _lookup("environment", self.environments, name, identity)

    def for_identity(self, identity: Identity) -> Catalog:
        """What ``identity`` may see and use; defaults fall back to their first entitled entry."""
        flavors = tuple(f for f in self.flavors if f.allowed.allows(identity))
        environments = tuple(e for e in self.environments if e.allowed.allows(identity))
        return Catalog(
            flavors=flavors,
            environments=environments,
            default_flavor=_default_among(self.default_flavor, flavors),
            default_environment=_default_among(self.default_environment, environments),
        )


# --- validation -------------------------------------------------------------------------------

Parser = Callable[[Any], Any]


class _Problems:
    """Collects one message per problem, each prefixed with where it is."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")

    def parse(
        self, where: str, raw: Mapping[str, Any], key: str, parser: Parser, default: Any
    ) -> Any:
        if key not in raw:
            return default
        try:
            return parser(raw[key])
        except ValueError as error:
            self.add(f"{where}.{key}" if where else key, str(error))
            return default

    def unknown_fields(self, where: str, raw: Mapping[str, Any], known: Iterable[str]) -> None:
        known = list(known)
        for key in raw:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.add(where, f"unknown field {key!r}{hint}; known fields: {', '.join(known)}")


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {value!r}")
    return value


def _name(value: Any) -> str:
    text = _text(value)
    if not text or not all(c.isalnum() or c in "-_." for c in text):
        raise ValueError(
            f"must be a non-empty name of letters, digits, '-', '_' or '.', got {value!r}"
        )
    return text


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be a whole number, got {value!r}")
    if value < 0:
        raise ValueError(f"must be >= 0, got {value}")
    return value


def _positive(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value < 1:
        raise ValueError(f"must be >= 1, got {value}")
    return _count(value)


def _price(value: Any) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"must be a number >= 0 or null, got {value!r}")
    return float(value)


def _choice(options: tuple[str, ...]) -> Parser:
    def parse(value: Any) -> str:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}; got {value!r}")
        return str(value)

    return parse


def _names(value: Any) -> frozenset[str]:
    if not isinstance(value, list | tuple | set | frozenset) or not all(
        isinstance(v, str) for v in value
    ):
        raise ValueError(f"must be a list of names, got {value!r}")
    return frozenset(value)


def _string_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError(f"must be a mapping of strings to strings, got {value!r}")
    return dict(value)


def _tolerations(value: Any) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise ValueError(f"must be a list of Kubernetes tolerations (mappings), got {value!r}")
    return tuple(dict(v) for v in value)


def _memory(value: Any) -> int:
    try:
        return parse_memory(value)
    except ValueError as error:
        raise ValueError(str(error)) from None


_ACCELERATOR_FIELDS = ("kind", "model", "count")
_ENTITLEMENT_FIELDS = ("users", "groups")
_FLAVOR_FIELDS = (
    "name", "display_name", "description", "accelerator", "cpu", "memory", "capacity_type",
    "price_per_hour", "max_nodes", "node_selector", "tolerations", "volumes", "users", "groups",
)  # fmt: skip
_ENVIRONMENT_FIELDS = (
    "name", "display_name", "description", "framework", "image", "python", "launcher", "env",
    "volumes", "users", "groups",
)  # fmt: skip


def _accelerator(problems: _Problems, where: str, raw: Any) -> Accelerator | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        problems.add(where, f"must be a mapping with {', '.join(_ACCELERATOR_FIELDS)}, got {raw!r}")
        return None
    problems.unknown_fields(where, raw, _ACCELERATOR_FIELDS)
    if "kind" not in raw:
        problems.add(where, "missing field 'kind' (for example 'nvidia.com/gpu')")
    kind = problems.parse(where, raw, "kind", _text, "")
    model = problems.parse(where, raw, "model", _text, "")
    count = problems.parse(where, raw, "count", _count, 1)
    return Accelerator(kind=kind, model=model, count=count) if count else None


def _entitlement(problems: _Problems, where: str, raw: Mapping[str, Any]) -> Entitlement:
    return Entitlement(
        users=problems.parse(where, raw, "users", _names, frozenset()),
        groups=problems.parse(where, raw, "groups", _names, frozenset()),
    )


def parse_entitlement(raw: Any, where: str) -> Entitlement:
    """Who may use something beside the catalog's entries (a priority class), from a mapping of
    ``users`` and ``groups``, as a flavor says it; InvalidInput naming ``where`` otherwise."""
    problems = _Problems()
    entitlement = Entitlement()
    if isinstance(raw, Mapping):
        problems.unknown_fields(where, raw, _ENTITLEMENT_FIELDS)
        entitlement = _entitlement(problems, where, raw)
    else:
        problems.add(where, f"must be a mapping with users and groups, got {raw!r}")
    if problems.items:
        raise InvalidInput("; ".join(problems.items), where)
    return entitlement


def _entry_where(kind: str, index: int, raw: Mapping[str, Any]) -> str:
    name = raw.get("name")
    return f"{kind}[{index}] {name!r}" if isinstance(name, str) else f"{kind}[{index}]"


def _flavor(problems: _Problems, where: str, raw: Mapping[str, Any]) -> Flavor:
    problems.unknown_fields(where, raw, _FLAVOR_FIELDS)
    name = problems.parse(where, raw, "name", _name, "")
    accelerator = _accelerator(problems, f"{where}.accelerator", raw.get("accelerator"))
    cpu = problems.parse(where, raw, "cpu", parse_cpu, 1.0)
    memory = problems.parse(where, raw, "memory", _memory, 2**30)
    default_display = _describe(accelerator, cpu, memory)
    return Flavor(
        name=name,
        display_name=problems.parse(where, raw, "display_name", _text, default_display),
        description=problems.parse(where, raw, "description", _text, ""),
        accelerator=accelerator,
        cpu=cpu,
        memory_bytes=memory,
        capacity_type=problems.parse(
            where, raw, "capacity_type", _choice(CAPACITY_TYPES), "on-demand"
        ),
        price_per_hour=problems.parse(where, raw, "price_per_hour", _price, None),
        max_nodes=problems.parse(where, raw, "max_nodes", _positive, 1),
        node_selector=problems.parse(where, raw, "node_selector", _string_map, {}),
        tolerations=problems.parse(where, raw, "tolerations", _tolerations, ()),
        volumes=parse_volumes(raw.get("volumes"), f"{where}.volumes", problems.items),
        allowed=_entitlement(problems, where, raw),
    )


def _describe(accelerator: Accelerator | None, cpu: float, memory: int) -> str:
    resources = f"{format_cpu(cpu)} CPU · {format_memory(memory)}"
    if accelerator is None:
        return resources
    model = accelerator.model or accelerator.kind
    return f"{accelerator.count} × {model} · {resources}"


def _environment(problems: _Problems, where: str, raw: Mapping[str, Any]) -> Environment:
    problems.unknown_fields(where, raw, _ENVIRONMENT_FIELDS)
    name = problems.parse(where, raw, "name", _name, "")
    return Environment(
        name=name,
        display_name=problems.parse(where, raw, "display_name", _text, name),
        description=problems.parse(where, raw, "description", _text, ""),
        framework=problems.parse(where, raw, "framework", _choice(FRAMEWORKS), "generic"),
        image=problems.parse(where, raw, "image", _text, ""),
        python=problems.parse(where, raw, "python", _text, ""),
        launcher=problems.parse(where, raw, "launcher", _choice(LAUNCHERS), "process"),
        env=problems.parse(where, raw, "env", _string_map, {}),
        volumes=parse_volumes(raw.get("volumes"), f"{where}.volumes", problems.items),
        allowed=_entitlement(problems, where, raw),
    )


def _entries(
    problems: _Problems,
    kind: str,
    raw: Any,
    build: Callable[[_Problems, str, Mapping[str, Any]], Any],
) -> list[Any]:
    if not isinstance(raw, list | tuple):
        problems.add(kind, f"must be a list, got {type(raw).__name__}")
        return []
    if not raw:
        problems.add(kind, "must list at least one entry")
    built, seen = [], set()
    for index, item in enumerate(raw):
        where = f"{kind}[{index}]"
        if not isinstance(item, Mapping):
            problems.add(where, f"must be a mapping, got {item!r}")
            continue
        where = _entry_where(kind, index, item)
        if "name" not in item:
            problems.add(where, "missing field 'name'")
        entry = build(problems, where, item)
        if entry.name and entry.name in seen:
            problems.add(where, f"duplicate name {entry.name!r}")
        seen.add(entry.name)
        built.append(entry)
    return built


def build_catalog(
    flavors: Any, environments: Any, default_flavor: str = "", default_environment: str = ""
) -> Catalog:
    """A validated catalog, or a CatalogError listing every problem found."""
    problems = _Problems()
    flavor_list = _entries(problems, "flavors", flavors, _flavor)
    environment_list = _entries(problems, "environments", environments, _environment)
    for key, chosen, entries in (
        ("default_flavor", default_flavor, flavor_list),
        ("default_environment", default_environment, environment_list),
    ):
        names = [e.name for e in entries]
        if chosen and chosen not in names:
            problems.add(
                key, f"{chosen!r} is not in the catalog (known: {', '.join(names) or 'none'})"
            )
    if problems.items:
        raise CatalogError(problems.items)
    return Catalog(
        flavors=tuple(flavor_list),
        environments=tuple(environment_list),
        default_flavor=default_flavor or flavor_list[0].name,
        default_environment=default_environment or environment_list[0].name,
    )


def read_catalog_document(document: Any) -> dict[str, Any]:
    """The parts of a catalog file (YAML/JSON) checked for shape; entries are checked later."""
    if document is None:
        return {}
    if not isinstance(document, Mapping):
        raise CatalogError([f"catalog_file: must be a mapping, got {type(document).__name__}"])
    problems = _Problems()
    problems.unknown_fields("catalog_file", document, CATALOG_KEYS)
    if problems.items:
        raise CatalogError(problems.items)
    return dict(document)


CATALOG_KEYS = ("flavors", "environments", "default_flavor", "default_environment")
