"""Who is asking: the one input every decision about flavors, quotas and jobs depends on.

An identity is always derived on the server from the authenticated request (or the OS user for
the CLI's ``--local``), never read from a request body.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Identity:
    user: str
    groups: frozenset[str] = field(default_factory=frozenset)
    admin: bool = False

    def may_see(self, owner: str) -> bool:
        """Users see (and act on) their own jobs, kernels and leases; admins everybody's."""
        return self.admin or owner == self.user

    def to_json(self) -> dict[str, object]:
        return {"user": self.user, "groups": sorted(self.groups), "admin": self.admin}


def resolve_identity(
    user: str,
    *,
    known_groups: Iterable[str] = (),
    group_members: Mapping[str, Iterable[str]],
    admin_users: Iterable[str],
    admin_groups: Iterable[str],
    known_admin: bool = False,
) -> Identity:
    """Combine what the authenticator knows (``known_groups``, ``known_admin``: a JupyterHub
    admin is an admin here too) with the admin's configuration, which can only add to it."""
    groups = set(known_groups)
    groups.update(name for name, members in group_members.items() if user in set(members))
    admin = known_admin or user in set(admin_users) or bool(groups & set(admin_groups))
    return Identity(user=user, groups=frozenset(groups), admin=admin)
