"""The admin's job policy as the local agent holds it: catalog, quotas, priorities, preemption.

The Jupyter server sends its ``MLInfraApp`` settings to the agent (``settings_document``); the
agent rebuilds the same objects from them (``Policy.from_document``), so a job is judged by the
same catalog and quotas that the server shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..capacity import Machine
from ..catalog import Catalog
from ..identity import Identity, resolve_identity
from ..priorities import Priorities
from ..quotas import QuotaPolicy
from .spec import RequestLimits

if TYPE_CHECKING:
    from ..app import MLInfraApp


def settings_document(app: MLInfraApp) -> dict[str, Any]:
    """Every setting of ``app`` as JSON-ready values."""
    document = {}
    for name in sorted(app.class_own_traits(config=True)):
        value = getattr(app, name)
        document[name] = sorted(value) if isinstance(value, set) else value
    return document


@dataclass(frozen=True)
class Policy:
    catalog: Catalog
    machine: Machine
    """This machine as the settings describe it (detected, or the admin's inventory)."""
    quotas: QuotaPolicy
    priorities: Priorities
    preemption: bool
    grace_seconds: float
    readiness_timeout: float
    group_members: dict[str, list[str]]
    admin_users: frozenset[str]
    admin_groups: frozenset[str]
    limits: RequestLimits

    @classmethod
    def from_app(cls, app: MLInfraApp) -> Policy:
        inventory = app.make_inventory()
        return cls(
            catalog=inventory.catalog,
            machine=inventory.backend.machine,
            quotas=inventory.quotas,
            priorities=inventory.priorities,
            preemption=app.preemption,
            grace_seconds=app.preemption_grace_seconds,
            readiness_timeout=app.readiness_timeout_seconds,
            group_members={g: list(m) for g, m in app.groups.items()},
            admin_users=frozenset(app.admin_users),
            admin_groups=frozenset(app.admin_groups),
            limits=app.request_limits(),
        )

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Policy:
        from traitlets.config import Config

        from ..app import MLInfraApp

        return cls.from_app(MLInfraApp(config=Config({"MLInfraApp": document})))

    def identity(
        self, user: str, known_groups: frozenset[str] = frozenset(), known_admin: bool = False
    ) -> Identity:
        return resolve_identity(
            user,
            known_groups=known_groups,
            known_admin=known_admin,
            group_members=self.group_members,
            admin_users=self.admin_users,
            admin_groups=self.admin_groups,
        )
