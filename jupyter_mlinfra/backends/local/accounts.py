"""Which OS account a job's ranks run as, and the state directory that account must reach.

By default (``run_ranks_as = "agent"``) ranks run as the agent's own account: right for a
per-user agent, which runs as its user. A shared agent under JupyterHub serves every user of
the machine, and with JupyterHub's LocalProcessSpawner each of them has an OS account of their
own; with ``run_ranks_as = "owner"`` the agent (running as root) starts each job's ranks as
its owner's account, as the hub starts their notebook server, so one user's job cannot read
another's files. A hub user's account has the same name unless ``owner_accounts`` maps it.
"""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import NotAllowed

AGENT = "agent"
OWNER = "owner"


class NoAccount(NotAllowed):
    """The job's owner has no OS account to run its ranks as (HTTP 403)."""


@dataclass(frozen=True)
class Account:
    """An OS account as a rank process needs it: ids, groups, and its login variables."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    shell: str

    @classmethod
    def named(cls, name: str) -> Account:
        """The account ``name`` from the system's user database; KeyError when none."""
        entry = pwd.getpwnam(name)
        return cls(
            name=entry.pw_name,
            uid=entry.pw_uid,
            gid=entry.pw_gid,
            groups=tuple(os.getgrouplist(entry.pw_name, entry.pw_gid)),
            home=entry.pw_dir,
            shell=entry.pw_shell,
        )

    def env(self) -> dict[str, str]:
        """What a login as this account sets, replacing the agent's own values."""
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name, "SHELL": self.shell}


@dataclass(frozen=True)
class RankAccounts:
    """The admin's choice of who ranks run as (``run_ranks_as``, ``owner_accounts``)."""

    mode: str = AGENT
    names: Mapping[str, str] = field(default_factory=dict)
    """Hub user name -> OS account name, for users whose account is named differently."""

    @property
    def as_owner(self) -> bool:
        return self.mode == OWNER

    def for_owner(self, owner: str) -> Account | None:
        """The account ``owner``'s ranks run as; None for the agent's own. Raises NoAccount
        when they should run as the owner and the owner has no usable account here."""
        if not self.as_owner:
            return None
        name = self.names.get(owner, owner)
        called = f"account {name!r}" if name != owner else "an account of that name"
        try:
            account = Account.named(name)
        except KeyError:
            raise NoAccount(
                f"user {owner!r} has no OS account on this machine ({called}), and this agent "
                "runs each job as its owner's account: an admin must create it or map the user "
                "in owner_accounts",
                "owner",
            ) from None
        if account.uid == 0:
            raise NoAccount(
                f"user {owner!r} maps to {account.name!r}, a superuser account, which jobs "
                "never run as",
                "owner",
            )
        return account


def cannot_run_as_owners(data_dir: Path) -> str | None:
    """Why this agent cannot start ranks as their owners' accounts, in one line, or None."""
    if os.geteuid() != 0:
        return (
            "run_ranks_as='owner' needs the agent to run as root, to start each job as its "
            f"owner's account; this one runs as uid {os.geteuid()}"
        )
    data_dir.mkdir(parents=True, exist_ok=True)  # as the agent will: check what it gets
    for parent in reversed(data_dir.resolve().parents):
        if not parent.stat().st_mode & stat.S_IXOTH:
            return (
                f"run_ranks_as='owner': jobs' accounts cannot pass through {parent} (mode "
                f"{stat.S_IMODE(parent.stat().st_mode):04o}) to their job directories in "
                f"{data_dir}; choose a data_dir they can reach, e.g. /var/lib/jupyter-mlinfra"
            )
    return None


def open_to_ranks(data_dir: Path, reachable: tuple[str, ...]) -> None:
    """Let other accounts pass through ``data_dir`` into the ``reachable`` folders without
    listing them (0711), and keep everything else there to the agent (0600 files, 0700
    folders): the job store holds every user's jobs."""
    data_dir.chmod(0o711)
    for entry in data_dir.iterdir():
        if entry.name in reachable:
            entry.chmod(0o711)
        elif entry.is_dir() and not entry.is_symlink():
            entry.chmod(0o700)
        elif entry.is_file() and not entry.is_symlink():
            entry.chmod(entry.stat().st_mode & 0o700)
