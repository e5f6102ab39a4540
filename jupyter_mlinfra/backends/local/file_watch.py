"""Waking a log's follower when the files of a folder grow: Linux inotify, read through the
asyncio loop, so a follower costs nothing while nothing is written and hears of a line as soon
as a rank writes it.

The agent holds one inotify instance (``Inotify``) for all its followers: an account may open
only ``fs.inotify.max_user_instances`` of them (128 by default), and a shared agent runs as one
account for every user of a hub. It is open while some folder is watched, closed with the last.

``FolderWatch`` is the one place that falls back to a timer: where the C library has no
inotify (not Linux), or inotify refuses (instances or watches used up, a folder it may not
read), it wakes its follower every ``POLL_SECONDS`` instead, as every follower did before.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import os
import struct
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

log = logging.getLogger("jupyter_mlinfra.agent")

POLL_SECONDS = 0.2
"""How often a follower without inotify looks again."""

IN_MODIFY = 0x002
IN_CLOSE_WRITE = 0x008
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_Q_OVERFLOW = 0x4000
"""Events were lost (the queue was full): every follower must look."""
IN_IGNORED = 0x8000
"""The watch is gone (its folder was removed)."""
GROWS = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE
"""What wakes a follower: a file written, closed after writing, or new in the folder."""
_EVENT = struct.Struct("iIII")
"""``struct inotify_event`` without its name: wd, mask, cookie, length of the name."""

_libc = ctypes.CDLL(None, use_errno=True)
_HAS_INOTIFY = all(
    hasattr(_libc, name) for name in ("inotify_init1", "inotify_add_watch", "inotify_rm_watch")
)


def _checked(result: int, what: str) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")
    return result


def inotify_init() -> int:
    """A new inotify instance's fd, non-blocking and closed on exec (ranks never inherit it)."""
    if not _HAS_INOTIFY:
        raise OSError(errno.ENOSYS, "inotify is not available on this system")
    return _checked(_libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC), "inotify_init1")


def add_watch(fd: int, folder: Path, mask: int) -> int:
    """The watch descriptor of ``folder`` (the same for every call on the same folder)."""
    return _checked(_libc.inotify_add_watch(fd, os.fsencode(folder), mask), str(folder))


def parse_events(data: bytes) -> list[tuple[int, int, str]]:
    """The (watch descriptor, mask, file name) of each event in what one read of an inotify
    fd returned."""
    events = []
    offset = 0
    while offset + _EVENT.size <= len(data):
        wd, mask, _, length = _EVENT.unpack_from(data, offset)
        offset += _EVENT.size
        name = data[offset : offset + length].rstrip(b"\0")
        offset += length
        events.append((wd, mask, os.fsdecode(name)))
    return events


class Inotify:
    """The one inotify instance of a process's followers, on the loop that runs them: each
    folder is watched once however many follow it, and the fd is open only while some
    folder is watched."""

    def __init__(self) -> None:
        self._fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watches: dict[int, list[FolderWatch]] = {}
        """Who follows each watched folder, by its watch descriptor."""

    def add(self, watch: FolderWatch) -> int:
        """Watch ``watch.folder`` for it; OSError when inotify cannot (FileNotFoundError: the
        folder is not there yet)."""
        if self._fd is None:
            self._fd = inotify_init()
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(self._fd, self._read)
        try:
            wd = add_watch(self._fd, watch.folder, GROWS)
        except OSError:
            self._close_unused()
            raise
        self._watches.setdefault(wd, []).append(watch)
        return wd

    def remove(self, wd: int, watch: FolderWatch) -> None:
        watches = self._watches.get(wd, [])
        if watch in watches:
            watches.remove(watch)
        if not watches and self._watches.pop(wd, None) is not None and self._fd is not None:
            _libc.inotify_rm_watch(self._fd, wd)  # fails only if the folder went: then it is gone
        self._close_unused()

    def _read(self) -> None:
        assert self._fd is not None
        try:
            data = os.read(self._fd, 64 * 1024)
        except BlockingIOError:
            return
        for wd, mask, _ in parse_events(data):
            if mask & IN_Q_OVERFLOW:
                watches = [w for every in self._watches.values() for w in every]
            else:
                watches = list(self._watches.get(wd, []))
            if mask & IN_IGNORED:  # the folder went, and its watch with it
                self._watches.pop(wd, None)
            for watch in watches:
                watch.changed(gone=bool(mask & IN_IGNORED))
        self._close_unused()

    def _close_unused(self) -> None:
        if self._fd is not None and not self._watches:
            assert self._loop is not None
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None


class FolderWatch:
    """Calls ``wake`` from the running loop whenever a file in ``folder`` is created, written
    or closed after writing; until ``close`` (or the end of a ``with`` block). A folder that
    does not exist yet is watched from the first ``attach`` after it appears; the follower
    calls ``attach`` before each read, and reads the whole file then."""

    def __init__(self, inotify: Inotify, folder: Path, wake: Callable[[], None]) -> None:
        self.inotify = inotify
        self.folder = folder
        self.wake = wake
        self._wd: int | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.attach()

    def attach(self) -> None:
        if self._wd is not None or self._timer is not None:
            return
        try:
            self._wd = self.inotify.add(self)
        except FileNotFoundError:
            return
        except OSError as error:
            log.info("following logs in %s every %g s: %s", self.folder, POLL_SECONDS, error)
            self._tick()

    def changed(self, *, gone: bool) -> None:
        if gone:  # watched again from the next attach, if it comes back
            self._wd = None
        self.wake()

    def _tick(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(POLL_SECONDS, self._tick)
        self.wake()

    def close(self) -> None:
        if self._wd is not None:
            self.inotify.remove(self._wd, self)
            self._wd = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def __enter__(self) -> FolderWatch:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
