"""The admin's job policy as the local agent holds it: catalog, quotas, priorities, preemption.

The Jupyter server sends its settings to the agent (``Settings.to_document``); the agent reads
them back (``Policy.from_document``) and builds the same objects from them, so a job is judged
by the same catalog and quotas that the server shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..backends.local.builtin import builtin_catalog
from ..backends.local.machine import detect_frameworks, detect_machine
from ..capacity import Machine
from ..catalog import Catalog
from ..identity import Identity
from ..priorities import Priorities
from ..quotas import QuotaPolicy
from ..settings import Settings
from .spec import RequestLimits


@dataclass(frozen=True)
class Policy:
    catalog: Catalog
    machine: Machine
    """This machine as the settings describe it (detected, or the admin's inventory)."""
    quotas: QuotaPolicy
    priorities: Priorities
    settings: Settings

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        machine = detect_machine(inventory=settings.local_accelerators)
        return cls(
            catalog=settings.catalog(lambda: builtin_catalog(machine, detect_frameworks())),
            machine=machine,
            quotas=settings.quotas(),
            priorities=settings.priorities(),
            settings=settings,
        )

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Policy:
        return cls.from_settings(Settings.from_document(document))

    @property
    def preemption(self) -> bool:
        return self.settings.preemption

    @property
    def grace_seconds(self) -> float:
        return self.settings.preemption_grace_seconds

    @property
    def readiness_timeout(self) -> float:
        return self.settings.readiness_timeout_seconds

    @property
    def limits(self) -> RequestLimits:
        return self.settings.request_limits()

    def identity(
        self, user: str, known_groups: frozenset[str] = frozenset(), known_admin: bool = False
    ) -> Identity:
        return self.settings.identity(user, known_groups, known_admin)
