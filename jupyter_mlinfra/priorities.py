"""Priority classes: their values, the default, and who may submit at each.

Pure. A class is a name and a value, like Kueue's WorkloadPriorityClasses: higher values are
admitted first and, with preemption, may evict lower ones. So choosing one is an entitlement,
said the way a flavor says it (``users`` and ``groups``; an entry that lists nobody is
everybody's): everybody may use the default class, another class only whom the admin lists for
it, admins every class. Left alone, a user can neither jump the queue nor evict anybody.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .catalog import Entitlement, parse_entitlement
from .errors import InvalidInput, NotAllowed, shown
from .identity import Identity


@dataclass(frozen=True)
class Priorities:
    classes: Mapping[str, int]
    """Every class, as {name: value}."""
    default: str
    """The class of a job that names none; everybody's."""
    granted: Mapping[str, Entitlement] = field(default_factory=dict)
    """Who may use each other class; a class missing here is the admins' alone."""

    @classmethod
    def from_config(
        cls, classes: Mapping[str, int], default: str, entitlements: Mapping[str, Any]
    ) -> Priorities:
        """Priorities from the settings; an entitlement of a class that does not exist is a
        mistake (a typo would silently grant nothing), named with its setting."""
        granted = {}
        for name, raw in entitlements.items():
            where = f"priority_entitlements[{name!r}]"
            if name not in classes:
                known = ", ".join(sorted(classes))
                raise InvalidInput(f"{where}: no priority class {name!r} (known: {known})", where)
            granted[name] = parse_entitlement(raw, where)
        return cls(classes=dict(classes), default=default, granted=granted)

    def allows(self, identity: Identity, name: str) -> bool:
        if identity.admin or name == self.default:
            return True
        entitlement = self.granted.get(name)
        return entitlement is not None and entitlement.allows(identity)

    def for_identity(self, identity: Identity) -> list[str]:
        """The classes ``identity`` may submit at, highest first."""
        ordered = sorted(self.classes, key=lambda name: (-self.classes[name], name))
        return [name for name in ordered if self.allows(identity, name)]

    def choose(self, identity: Identity, name: str) -> int:
        """The value of class ``name``; 400 when there is no such class, 403 naming it when
        ``identity`` may not use it."""
        if name not in self.classes:
            known = ", ".join(sorted(self.classes))
            raise InvalidInput(
                f"priority: unknown class {shown(name)} (known: {known})", "priority"
            )
        if not self.allows(identity, name):
            mine = ", ".join(self.for_identity(identity)) or "none"
            raise NotAllowed(
                f"user {identity.user!r} may not use priority class {shown(name)} (yours: {mine})",
                "priority",
            )
        return self.classes[name]
