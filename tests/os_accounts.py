"""Real OS accounts for tests that run users' servers and jobs as their own accounts.

``os_accounts("alice", "bob")`` creates ``mlinfra-t-alice`` and ``mlinfra-t-bob`` with
``useradd`` (members of the group ``mlinfra-t``, private homes), and afterwards stops every
process they run and removes them with their homes. It needs root: elsewhere the test is
skipped with the reason (and fails in CI, ``optional.need``).

The accounts must run this Python environment, as users of a real deployment run one an admin
installed for everybody. Here it may lie where only root can go (pyenv under /root, a clone in
a private temporary folder), so while the accounts exist the group ``mlinfra-t`` may pass
through (never list) exactly the folders above the interpreter and the project that others
cannot: a POSIX ACL entry, removed afterwards with the folder's mode as it was.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import stat
import struct
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import jupyter_mlinfra

from .optional import need

PREFIX = "mlinfra-t-"
GROUP = "mlinfra-t"

ACL = "system.posix_acl_access"
ACL_VERSION = 2
USER_OBJ, GROUP_OBJ, NAMED_GROUP, MASK, OTHER = 0x01, 0x04, 0x08, 0x10, 0x20
NO_ID = 0xFFFFFFFF
EXECUTE = 1


def _run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")


def _processes_of(uids: set[int]) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        line = next((x for x in status.splitlines() if x.startswith("Uid:")), "")
        if line and {int(u) for u in line.split()[1:]} & uids:
            pids.append(int(entry.name))
    return pids


def _stop_processes_of(uids: set[int]) -> None:
    """SIGKILL what the accounts still run (servers, kernels, ranks), until none is left."""
    deadline = time.monotonic() + 30
    while (pids := _processes_of(uids)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def _remove(names: Sequence[str]) -> None:
    """Remove these accounts, their homes and processes, and the group, where they exist."""
    uids = set()
    for name in names:
        with contextlib.suppress(KeyError):
            uids.add(pwd.getpwnam(name).pw_uid)
    _stop_processes_of(uids)
    for name in names:
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            _run("userdel", "--remove", name)
    with contextlib.suppress(KeyError):
        grp.getgrnam(GROUP)
        _run("groupdel", GROUP)


def _closed_folders(paths: Sequence[Path]) -> list[Path]:
    """The folders above (and including the folder parts of) ``paths`` that other accounts
    cannot pass through."""
    closed: list[Path] = []
    for path in paths:
        for folder in [*reversed(path.parents), path]:
            passable = not folder.is_dir() or folder.stat().st_mode & stat.S_IXOTH
            if not passable and folder not in closed:
                closed.append(folder)
    return closed


def _acl(current: bytes | None, mode: int, gid: int) -> bytes:
    """A folder's ACL (``current``, or none beyond its ``mode``) plus: group ``gid`` may pass
    through."""
    if current is None:
        entries = [(USER_OBJ, (mode >> 6) & 7, NO_ID), (GROUP_OBJ, (mode >> 3) & 7, NO_ID),
                   (OTHER, mode & 7, NO_ID)]  # fmt: skip
    else:
        entries = [struct.unpack_from("<HHI", current, at) for at in range(4, len(current), 8)]
    entries = [e for e in entries if (e[0], e[2]) != (NAMED_GROUP, gid)]
    entries.append((NAMED_GROUP, EXECUTE, gid))
    mask = [e for e in entries if e[0] == MASK]
    group = next(perm for tag, perm, _ in entries if tag == GROUP_OBJ)
    entries = [e for e in entries if e[0] != MASK]
    entries.append((MASK, (mask[0][1] if mask else group) | EXECUTE, NO_ID))
    entries.sort(key=lambda e: (e[0], e[2]))
    return struct.pack("<I", ACL_VERSION) + b"".join(struct.pack("<HHI", *e) for e in entries)


@contextmanager
def _passable(folders: Sequence[Path], gid: int) -> Iterator[None]:
    before: dict[Path, tuple[bytes | None, int]] = {}
    try:
        for folder in folders:
            try:
                current: bytes | None = os.getxattr(folder, ACL)
            except OSError:  # none: the usual case
                current = None
            mode = stat.S_IMODE(folder.stat().st_mode)
            os.setxattr(folder, ACL, _acl(current, mode, gid))
            before[folder] = (current, mode)
        yield
    finally:
        for folder, (acl, mode) in before.items():
            with contextlib.suppress(OSError):
                if acl is None:
                    os.removexattr(folder, ACL)
                    folder.chmod(mode)
                else:
                    os.setxattr(folder, ACL, acl)


def _environment() -> list[Path]:
    """What an account needs to reach to run this Python with its packages and the project."""
    return [
        Path(os.path.realpath(sys.executable)).parent,
        Path(sys.base_prefix),
        Path(sys.prefix),
        Path(sysconfig.get_paths()["purelib"]),
        Path(jupyter_mlinfra.__file__).resolve().parent,
    ]


def _can_run_this_python(name: str) -> str:
    """'' when the account can import what users' servers and ranks import, else why not."""
    account = pwd.getpwnam(name)
    result = subprocess.run(
        [sys.executable, "-c", "import jupyterhub.singleuser, jupyter_mlinfra, cloudpickle"],
        user=account.pw_uid, group=account.pw_gid,
        extra_groups=os.getgrouplist(name, account.pw_gid),
        capture_output=True, text=True, timeout=120, check=False, cwd="/",
    )  # fmt: skip
    return "" if result.returncode == 0 else result.stderr.strip()[-500:]


@contextmanager
def os_accounts(*names: str) -> Iterator[dict[str, pwd.struct_passwd]]:
    """``mlinfra-t-<name>`` for each name, by name, for the duration of the block."""
    need(os.geteuid() == 0, "creating OS accounts for hub users needs root")
    tools = ("useradd", "userdel", "groupadd", "groupdel")
    missing = [t for t in tools if shutil.which(t) is None]
    need(not missing, f"no {', '.join(missing)} here to create OS accounts with")
    full = [PREFIX + name for name in names]
    leftovers = [e.pw_name for e in pwd.getpwall() if e.pw_name.startswith(PREFIX)]
    _remove(leftovers)  # of a run that was killed before it could clean up
    try:
        _run("groupadd", GROUP)
        for name in full:
            _run("useradd", "--create-home", "--groups", GROUP, "--shell", "/bin/sh", name)
            Path(pwd.getpwnam(name).pw_dir).chmod(0o700)
        accounts = {name: pwd.getpwnam(PREFIX + name) for name in names}
        with _passable(_closed_folders(_environment()), grp.getgrnam(GROUP).gr_gid):
            why = _can_run_this_python(full[0])
            need(not why, f"the test accounts cannot run this Python environment: {why}")
            yield accounts
    finally:
        _remove(full)
