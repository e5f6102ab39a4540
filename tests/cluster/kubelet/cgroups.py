"""A memory cgroup per container, as a container runtime makes one: it holds every process of
the container (whatever sessions they start), so the kubelet can end them all; its limit is
``resources.limits.memory``, enforced by the kernel's OOM killer.

The cgroups live under the kubelet process's own memory cgroup (on this machine's cgroup v1
hierarchy, or cgroup v2 where memory is there), so they stay inside whatever limits the test
session itself runs under.

On cgroup v2 the kubelet sets ``memory.oom.group``, as Kubernetes does since 1.28: an OOM kill
ends the whole container. cgroup v1 has no such switch: the kernel kills one process, and the
kubelet, told at once through ``cgroup.event_control`` (an eventfd), kills the rest."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import time
from collections.abc import Callable
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
#: how long a killed container's processes may take to leave its cgroup
REMOVE_SECONDS = 10.0


class CgroupsUnavailable(RuntimeError):
    """No writable memory cgroup hierarchy."""


def _own_memory_cgroup() -> tuple[Path, int]:
    """The memory cgroup this process is in, and the hierarchy's version."""
    v2 = None
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        number, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return CGROUP_ROOT / "memory" / path.lstrip("/"), 1
        if number == "0":
            v2 = path
    if v2 is not None:
        unified = CGROUP_ROOT / "unified" if (CGROUP_ROOT / "unified").is_dir() else CGROUP_ROOT
        folder = unified / v2.lstrip("/")
        if "memory" in (unified / "cgroup.controllers").read_text().split():
            return folder, 2
    raise CgroupsUnavailable("no memory cgroup controller is mounted")


def _kill_all(folder: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        for pid in (folder / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


class Cgroups:
    """The kubelet's folder of cgroups: ``mlinfra-kubelet-<pid>-<token>`` under its own."""

    def __init__(self) -> None:
        own, self.version = _own_memory_cgroup()
        self.parent = own.parent if own.name.startswith("mlinfra-kubelet-") else own
        # the pid says whose it is (for reaping); the token keeps two in one process apart
        self.root = self.parent / f"mlinfra-kubelet-{os.getpid()}-{secrets.token_hex(4)}"

    def start(self) -> None:
        self._reap_orphans()
        try:
            self.root.mkdir(exist_ok=True)
            if self.version == 2:
                (self.root / "cgroup.subtree_control").write_text("+memory")
        except OSError as error:
            raise CgroupsUnavailable(f"cannot create {self.root}: {error}") from None

    def _reap_orphans(self) -> None:
        """Cgroups of test kubelets that died without cleaning up: their processes are ended."""
        for folder in self.parent.glob("mlinfra-kubelet-*"):
            pid = int(folder.name.split("-")[2])
            if pid != os.getpid() and not Path(f"/proc/{pid}").exists():
                _remove_tree(folder)

    def container(self, name: str, limit: int | None) -> ContainerCgroup:
        folder = self.root / name
        folder.mkdir()
        if self.version == 1:
            if limit is not None:
                (folder / "memory.limit_in_bytes").write_text(str(limit))
        else:
            if limit is not None:
                (folder / "memory.max").write_text(str(limit))
            (folder / "memory.oom.group").write_text("1")
        return ContainerCgroup(folder, self.version)

    def stop(self) -> None:
        _remove_tree(self.root)


def _remove_tree(folder: Path) -> None:
    """Kill every process below ``folder`` and remove the cgroups, deepest first. A cgroup can
    go once its processes have exited, which follows SIGKILL within moments: each removal is
    retried for up to ``REMOVE_SECONDS``."""
    folders = sorted(
        (p for p in [folder, *folder.rglob("*")] if p.is_dir()), key=lambda p: -len(p.parts)
    )
    for child in folders:
        _kill_all(child)
    for child in folders:
        deadline = time.monotonic() + REMOVE_SECONDS
        while True:
            try:
                child.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                _kill_all(child)
                time.sleep(0.005)


class ContainerCgroup:
    """One container's cgroup: ``procs`` for the launcher to join, OOM kills, ending them all."""

    def __init__(self, folder: Path, version: int) -> None:
        self.folder = folder
        self.version = version
        self._eventfd: int | None = None
        self._files: list[int] = []

    @property
    def procs(self) -> str:
        return os.fspath(self.folder / "cgroup.procs")

    def oom_kills(self) -> int:
        """How many processes the OOM killer ended in this cgroup."""
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            text = (self.folder / name).read_text()
        except FileNotFoundError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def on_oom(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (in the running loop) when the OOM killer strikes (cgroup v1; v2's
        ``memory.oom.group`` needs no help)."""
        if self.version != 1:
            return
        self._eventfd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        control = os.open(self.folder / "memory.oom_control", os.O_RDONLY | os.O_CLOEXEC)
        self._files.append(control)
        (self.folder / "cgroup.event_control").write_text(f"{self._eventfd} {control}")
        loop = asyncio.get_running_loop()

        def fired() -> None:
            # told as the cgroup runs out of memory, before the kernel picks its victim
            with contextlib.suppress(BlockingIOError):
                os.eventfd_read(self._eventfd)  # type: ignore[arg-type]
            callback()

        loop.add_reader(self._eventfd, fired)

    def kill(self) -> None:
        """SIGKILL every process of the container."""
        _kill_all(self.folder)

    def pids(self) -> list[int]:
        try:
            return [int(pid) for pid in (self.folder / "cgroup.procs").read_text().split()]
        except FileNotFoundError:
            return []

    def close(self) -> None:
        """Stop listening for OOM kills (before the cgroup goes)."""
        if self._eventfd is not None:
            asyncio.get_running_loop().remove_reader(self._eventfd)
            os.close(self._eventfd)
            self._eventfd = None
        for fd in self._files:
            os.close(fd)
        self._files.clear()

    async def remove(self) -> None:
        """Kill what is left and remove the cgroup once its processes have exited (moments
        after SIGKILL; waited for without blocking the loop)."""
        self.close()
        deadline = time.monotonic() + REMOVE_SECONDS
        while True:
            self.kill()
            try:
                self.folder.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.005)
