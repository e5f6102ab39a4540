"""Which OS account a job's ranks run as, and the state directory that account must reach.

A per-user agent runs as its user, and so do the ranks it starts (``run_ranks_as = "agent"``).
The agent a JupyterHub shares (``jupyter mlinfra agent --hub``) serves every user of the
machine; with JupyterHub's LocalProcessSpawner each of them has an OS account of their own, and
the agent (running as root, like the hub) starts each job's ranks as its owner's account
(``"owner"``, its default there), as the hub starts their notebook server, so one user's job
cannot read or change another's files. A hub user's account has the same name unless
``owner_accounts`` maps it.

A shared agent that cannot do that (it does not run as root) runs everybody's ranks as its own
account, and says so at every start and in each user's ``whoami``; as root it refuses to,
unless an admin sets ``unsafe_ranks_as_root``. Either way no user's jobs are isolated from
another's there, and the agent cannot tell who wrote a job's results, so it hands none out.
"""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import InvalidInput, NotAllowed

if TYPE_CHECKING:
    from ...models import catalog as wire

AGENT = "agent"
OWNER = "owner"

LOGIN_VARIABLES = ("PATH", "LANG", "LANGUAGE", "TZ")
"""What ranks of another account, or of a shared agent, get of the agent's own environment
(besides ``LC_*``): a login's basics, never the agent's secrets (its hub token above all)."""


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


def agent_account() -> str:
    """The name of the account this process runs as (its uid when it has none)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


@dataclass(frozen=True)
class RankAccounts:
    """Who ranks run as (``run_ranks_as``, ``owner_accounts``), and for whom this agent runs."""

    mode: str = AGENT
    names: Mapping[str, str] = field(default_factory=dict)
    """Hub user name -> OS account name, for users whose account is named differently."""
    shared: bool = False
    """The agent runs several users' jobs (a JupyterHub's service)."""
    warning: str = ""
    """Why several users' ranks run as one account: said at every start and in whoami."""
    own_account: str = field(default_factory=agent_account)
    """The agent's account, which ranks run as unless they run as their owners'."""

    @property
    def as_owner(self) -> bool:
        return self.mode == OWNER

    @property
    def isolated(self) -> bool:
        """Whether one user's ranks are kept out of another's jobs: they run as their owners'
        accounts, or all jobs here are one user's."""
        return self.as_owner or not self.shared

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

    def isolation(self, owner: str) -> wire.Isolation:
        """What ``owner``'s ranks run as and whether other users' jobs can reach theirs, with
        the reason in one line (``whoami``'s ``isolation``)."""
        if not self.as_owner:
            me = self.own_account
            if self.shared:
                return {"ranks_run_as": me, "isolated": False, "reason": self.warning}
            reason = f"this agent is yours alone: your jobs run as its account {me!r}"
            return {"ranks_run_as": me, "isolated": True, "reason": reason}
        try:
            account = self.for_owner(owner)
        except NoAccount as refused:
            return {"ranks_run_as": None, "isolated": True, "reason": refused.message}
        assert account is not None
        reason = (
            f"your jobs run as the OS account {account.name!r}, in job directories only it can "
            "open; other users' jobs run as their own accounts"
        )
        return {"ranks_run_as": account.name, "isolated": True, "reason": reason}

    def check_results(self, job_id: str) -> None:
        """Refuse (NotAllowed) to hand out results this agent cannot vouch were written by the
        job's owner: with every user's ranks under one account, any user's job could have
        written them, and loading them would run that user's code."""
        if not self.isolated:
            raise NotAllowed(
                f"job {job_id}'s results are not handed out: this agent runs every user's jobs "
                f"as its own account, so another user's job may have written them ({self.warning})",
                "id",
            )

    def base_env(self, environ: Mapping[str, str], account: Account | None) -> dict[str, str]:
        """What a rank gets of the agent's environment ``environ``: all of it in a per-user
        agent whose ranks run as its own account (its user's, with that user's settings);
        else only the login basics (``LOGIN_VARIABLES``, ``LC_*``)."""
        if account is None and not self.shared:
            return dict(environ)
        return {k: v for k, v in environ.items() if k in LOGIN_VARIABLES or k.startswith("LC_")}


def choose_rank_accounts(
    run_ranks_as: str | None,
    names: Mapping[str, str],
    *,
    shared: bool,
    unsafe_ranks_as_root: bool,
    data_dir: Path,
) -> RankAccounts:
    """Who this agent runs ranks as, from the admin's settings and what it can do; raises
    InvalidInput, in one line, when it must not start so: ranks as owners it cannot start, or
    a shared agent running as root asked to run everybody's ranks as itself without
    ``unsafe_ranks_as_root``."""
    root = os.geteuid() == 0
    mode = run_ranks_as or (OWNER if shared and root else AGENT)
    if mode == OWNER:
        problem = cannot_run_as_owners(data_dir)
        if problem:
            raise InvalidInput(problem, "run_ranks_as")
        return RankAccounts(OWNER, names, shared)
    if not shared:
        return RankAccounts(AGENT, names)
    me = agent_account()
    if root and not unsafe_ranks_as_root:
        raise InvalidInput(
            "run_ranks_as='agent' would run every hub user's jobs as root, able to read and "
            "change everybody's jobs and this machine: leave run_ranks_as unset (each job then "
            "runs as its owner's OS account), or set unsafe_ranks_as_root = True to accept that",
            "run_ranks_as",
        )
    if root:
        cause = "UNSAFE: unsafe_ranks_as_root is set"
    elif run_ranks_as:
        cause = "run_ranks_as is 'agent'"
    else:
        cause = "this agent does not run as root and cannot start jobs as their owners' accounts"
    warning = (
        f"{cause}, so every hub user's jobs run as {me!r}: any user's job can read and change "
        "other users' jobs and the job store, and no job's results are handed out (to isolate "
        "users, run the hub and this agent as root with one OS account per user)"
    )
    return RankAccounts(AGENT, names, shared=True, warning=warning, own_account=me)


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


STATE = ("jobs", "logs", "jobs.sqlite", "jobs.sqlite-wal", "jobs.sqlite-shm", "jobs.sqlite-journal",
         "agent.lock", "agent.start.lock", "agent.log")  # fmt: skip
"""What the agent and its starters keep in ``data_dir``: only these are tightened there."""


def keep_private(data_dir: Path, *, open_jobs: bool) -> None:
    """Keep ``data_dir`` to the agent: 0700 folders and owner-only files (the job store holds
    every job's code, environment and pushed variables), however an earlier version or
    another process's umask left them. With ``open_jobs`` (ranks of other accounts) other
    accounts may pass through ``data_dir`` and ``data_dir/jobs`` to their own job directories,
    without listing either (0711)."""
    data_dir.chmod(0o700)  # first: nothing below is reachable while it is tightened
    for entry in (data_dir / name for name in STATE):
        if entry.is_symlink() or not entry.exists():
            continue
        if entry.is_dir():
            entry.chmod(0o711 if open_jobs and entry.name == "jobs" else 0o700)
        else:
            entry.chmod(entry.stat().st_mode & 0o700)
    if open_jobs:
        data_dir.chmod(0o711)
