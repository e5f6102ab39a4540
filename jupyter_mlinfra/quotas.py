"""Quotas: how much one user may hold or queue at once, and what they use now.

Pure. A user's quota is their own entry if the admin wrote one, else, field by field, the most
generous of their groups' entries (so joining a second group never takes rights away), else
the default.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from .capacity import Allocation
from .errors import InvalidInput
from .identity import Identity

if TYPE_CHECKING:
    from .models import catalog as wire
    from .models.jobs import GroupUsage, UsageReport, UserUsage


@dataclass(frozen=True)
class Quota:
    """Limits; ``None`` means unlimited."""

    max_gpus: int | None = None
    max_running_jobs: int | None = None
    max_queued_jobs: int | None = None

    def to_json(self) -> wire.Quota:
        return {
            "max_gpus": self.max_gpus,
            "max_running_jobs": self.max_running_jobs,
            "max_queued_jobs": self.max_queued_jobs,
        }


QUOTA_FIELDS = tuple(f.name for f in fields(Quota))


@dataclass(frozen=True)
class Usage:
    gpus: int = 0
    running_jobs: int = 0
    queued_jobs: int = 0
    kernels: int = 0

    def to_json(self) -> wire.Usage:
        return {
            "gpus": self.gpus,
            "running_jobs": self.running_jobs,
            "queued_jobs": self.queued_jobs,
            "kernels": self.kernels,
        }


def parse_quota(raw: Any, where: str) -> Quota:
    """A Quota from config; the error names the setting and the field."""
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{where}: must be a mapping of {', '.join(QUOTA_FIELDS)}", where)
    for key, value in raw.items():
        if key not in QUOTA_FIELDS:
            raise InvalidInput(
                f"{where}: unknown field {key!r}; known fields: {', '.join(QUOTA_FIELDS)}",
                f"{where}.{key}",
            )
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise InvalidInput(
                f"{where}.{key}: must be a whole number >= 0 or null, got {value!r}",
                f"{where}.{key}",
            )
    return Quota(**raw)


def _most_generous(quotas: list[Quota]) -> Quota:
    def widest(values: list[int | None]) -> int | None:
        return None if None in values else max(v for v in values if v is not None)

    return Quota(**{name: widest([getattr(q, name) for q in quotas]) for name in QUOTA_FIELDS})


@dataclass(frozen=True)
class QuotaPolicy:
    """The admin's quota settings, resolved per identity."""

    default: Quota = Quota()
    per_user: Mapping[str, Quota] = field(default_factory=dict)
    per_group: Mapping[str, Quota] = field(default_factory=dict)

    @classmethod
    def from_config(
        cls, default: Any, per_user: Mapping[str, Any], per_group: Mapping[str, Any]
    ) -> QuotaPolicy:
        return cls(
            default=parse_quota(default, "default_quota"),
            per_user={u: parse_quota(q, f"user_quotas[{u!r}]") for u, q in per_user.items()},
            per_group={g: parse_quota(q, f"group_quotas[{g!r}]") for g, q in per_group.items()},
        )

    def for_identity(self, identity: Identity) -> Quota:
        if identity.user in self.per_user:
            return self.per_user[identity.user]
        groups = [self.per_group[g] for g in sorted(identity.groups) if g in self.per_group]
        return _most_generous(groups) if groups else self.default


def usage_of(user: str, allocations: Iterable[Allocation], *, queued_jobs: int = 0) -> Usage:
    """What ``user`` holds now; queued jobs hold nothing, so their count comes from the queue."""
    mine = [a for a in allocations if a.owner == user]
    return Usage(
        gpus=sum(len(a.devices) for a in mine),
        running_jobs=len({a.holder for a in mine if a.is_job}),
        queued_jobs=queued_jobs,
        kernels=len({a.holder for a in mine if not a.is_job}),
    )


def usage_report(
    people: Iterable[Identity],
    policy: QuotaPolicy,
    allocations: Iterable[Allocation],
    queued_by_owner: Mapping[str, int],
) -> UsageReport:
    """Every user's usage against their quota, and per group its members' usage summed next
    to the quota each member gets from it (group quotas are per member, not shared)."""
    held = list(allocations)
    users: list[UserUsage] = []
    totals: dict[str, dict[str, Any]] = {}
    for identity in sorted(people, key=lambda i: i.user):
        usage = usage_of(identity.user, held, queued_jobs=queued_by_owner.get(identity.user, 0))
        users.append(
            {
                "user": identity.user,
                "groups": sorted(identity.groups),
                "admin": identity.admin,
                "quota": policy.for_identity(identity).to_json(),
                "usage": usage.to_json(),
            }
        )
        for group in identity.groups:
            entry = totals.setdefault(group, {"members": [], "usage": Usage()})
            entry["members"].append(identity.user)
            entry["usage"] = Usage(
                **{f.name: getattr(entry["usage"], f.name) + getattr(usage, f.name)
                   for f in fields(Usage)}
            )  # fmt: skip
    for group in policy.per_group:
        totals.setdefault(group, {"members": [], "usage": Usage()})
    groups: list[GroupUsage] = [
        {
            "group": name,
            "members": entry["members"],
            "member_quota": policy.per_group[name].to_json() if name in policy.per_group else None,
            "usage": entry["usage"].to_json(),
        }
        for name, entry in sorted(totals.items())
    ]
    return {"users": users, "groups": groups}
