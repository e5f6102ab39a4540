"""Becomes one container process: the test kubelet runs this script (as root, with ``python -I
-S``: the standard library only) with a launch file, and it ends by exec'ing the container's
command, so the container's first process keeps this process's pid.

For a container's start it joins the container's memory cgroup and the pod's network namespace,
unshares a mount and a UTS namespace, builds the container's root (an overlay whose lower layer
is the host's root, so the host's tools and the test interpreter are the "image", and whose
upper layer is the container's own: what it writes, and every mount point it needs, stay
there), binds the host's top-level mounts into it, gives it a private ``/dev``, chroots into it,
bind-mounts the pod's volumes at their mount paths (resolved inside the new root, so a symlink
such as ``/var/run`` never leads back to the host), sets the hostname and the user, and execs.

For ``exec`` into a running container it joins that container's cgroup and namespaces and its
root instead.

The kubelet learns whether the exec happened from a close-on-exec pipe: EOF without a byte means
the command runs; otherwise the pipe carries why not (the runtime's StartError)."""

from __future__ import annotations

import ctypes
import json
import os
import sys
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2

DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEVICE_LINKS = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
    "ptmx": "pts/ptmx",
}

libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _check(
        libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {source} on {target}",
    )


def _setns(path: str, kind: int) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        _check(libc.setns(fd, kind), f"setns {path}")
    finally:
        os.close(fd)


def _join_cgroup(procs: str | None) -> None:
    if procs:
        with open(procs, "w") as cgroup:
            cgroup.write(str(os.getpid()))


def _drop_namespace_files() -> None:
    """Unmount, in the new mount namespace, every namespace file it copied from the host
    (``ip netns`` keeps each pod's network namespace as a mount under ``/run/netns``): a copy
    would keep other pods' namespaces, and their addresses, alive as long as this container."""
    with open("/proc/self/mountinfo") as table:
        entries = [line.split() for line in table]
    for fields in entries:
        fstype = fields[fields.index("-") + 1]
        if fstype == "nsfs":
            path = fields[4].encode().decode("unicode_escape")
            libc.umount2(path.encode(), MNT_DETACH)  # one already gone with a parent is fine


def _private_dev(root: str) -> None:
    """A tmpfs ``/dev`` with the usual device nodes bound from the host's, as runtimes give
    containers (binding the host's whole ``/dev`` would let a container write files into it)."""
    dev = root + "/dev"
    _mount("tmpfs", dev, "tmpfs", MS_NOSUID, "mode=755")
    for name in DEVICES:
        open(f"{dev}/{name}", "w").close()
        _mount(f"/dev/{name}", f"{dev}/{name}", None, MS_BIND)
    for folder in ("pts", "shm", "mqueue"):
        os.mkdir(f"{dev}/{folder}")
    _mount("/dev/pts", f"{dev}/pts", None, MS_BIND)
    _mount("shm", f"{dev}/shm", "tmpfs", MS_NOSUID, "mode=1777,size=67108864")
    for name, target in DEVICE_LINKS.items():
        os.symlink(target, f"{dev}/{name}")


def _build_root(rootfs: dict[str, Any]) -> None:
    root = rootfs["target"]
    _mount(
        "overlay",
        root,
        "overlay",
        0,
        f"lowerdir=/,upperdir={rootfs['upper']},workdir={rootfs['work']}",
    )
    for mount in rootfs["submounts"]:
        _mount(mount, root + mount, None, MS_BIND | MS_REC)
    _private_dev(root)


def _ensure(path: str, is_file: bool) -> None:
    """The mount point, created inside the container's root (the overlay's upper layer)."""
    if os.path.lexists(path):
        return
    os.makedirs(os.path.dirname(path) or "/", exist_ok=True)
    if is_file:
        open(path, "a").close()
    else:
        os.mkdir(path)


def _bind_volumes(mounts: list[dict[str, Any]], sources: list[int]) -> None:
    for mount, fd in zip(mounts, sources, strict=True):
        target = mount["target"]
        _ensure(target, mount["file"])
        _mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
        if mount.get("readOnly"):
            _mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
        os.close(fd)


def _open_path(path: str) -> int:
    return os.open(path, os.O_PATH | os.O_CLOEXEC)


def _reachable(path: str) -> None:
    """Let every user traverse the folders above ``path`` and above what it links to (in the
    container's root only: the change is copied up into the overlay). The test interpreter
    lies under ``/root``, and a checkout may lie in a private folder (``mktemp -d``), both
    private on the host; in a real image the interpreter is everyone's."""
    for target in {path, os.path.realpath(path)}:
        folder = os.path.dirname(target)
        while folder != "/":
            mode = os.stat(folder).st_mode
            if mode & 0o001 == 0:
                os.chmod(folder, (mode & 0o7777) | 0o011)
            folder = os.path.dirname(folder)


def _become(user: dict[str, Any]) -> None:
    os.setgroups(user["groups"])
    os.setgid(user["gid"])
    os.setuid(user["uid"])


def start(spec: dict[str, Any]) -> None:
    """Everything up to the exec, as root."""
    _join_cgroup(spec.get("cgroup"))
    if spec.get("enter") is not None:
        pid = spec["enter"]
        root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY)
        for kind, flag in (("net", CLONE_NEWNET), ("uts", CLONE_NEWUTS), ("mnt", CLONE_NEWNS)):
            _setns(f"/proc/{pid}/ns/{kind}", flag)
        os.fchdir(root)
        os.chroot(".")
        os.close(root)
    else:
        _setns(spec["netns"], CLONE_NEWNET)
        _check(libc.unshare(CLONE_NEWNS | CLONE_NEWUTS), "unshare")
        _mount(None, "/", None, MS_REC | MS_PRIVATE)
        _drop_namespace_files()
        # opened in the new namespace (a bind from another one is refused), before the chroot
        # hides them
        sources = [_open_path(mount["source"]) for mount in spec["mounts"]]
        _build_root(spec["rootfs"])
        os.chdir(spec["rootfs"]["target"])
        os.chroot(".")
        os.chdir("/")
        _bind_volumes(spec["mounts"], sources)
        if spec["user"]["uid"] != 0:
            _reachable(spec["argv"][0] if os.path.isabs(spec["argv"][0]) else sys.executable)
        if spec.get("readOnlyRoot"):  # readOnlyRootFilesystem: the volumes stay writable
            _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY)
        hostname = spec["hostname"].encode()
        _check(libc.sethostname(hostname, len(hostname)), "sethostname")
    _become(spec["user"])
    os.chdir(spec["cwd"])


def main() -> None:
    spec_path, report = sys.argv[1], int(sys.argv[2])
    with open(spec_path) as launch:
        spec = json.load(launch)
    os.unlink(spec_path)  # it holds the container's environment
    os.set_inheritable(report, False)
    try:
        start(spec)
    except OSError as error:
        os.write(report, f"failed to create container: {error}".encode())
        os._exit(128)
    argv, env = spec["argv"], spec["env"]
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as error:
        reason = "no such file or directory" if error.errno == 2 else error.strerror
        os.write(
            report,
            f'exec: "{argv[0]}": {reason}'.encode()
            if os.path.isabs(argv[0])
            else f'exec: "{argv[0]}": executable file not found in $PATH'.encode(),
        )
        os._exit(128)


if __name__ == "__main__":
    main()
