"""Waking a log's follower when the files of a folder grow: Linux inotify, read through the
asyncio loop, so a follower costs nothing while nothing is written and hears of a line as soon
as a rank writes it.

``FolderWatch`` is the one place that falls back to a timer: where the C library has no
inotify (not Linux), or this account's inotify instances or watches are used up
(``fs.inotify.max_user_instances``, ``max_user_watches``), it wakes its follower every
``POLL_SECONDS`` instead, as every follower did before.
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
IN_IGNORED = 0x8000
"""The watch is gone (its folder was removed)."""
GROWS = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE
"""What wakes a follower: a file written, closed after writing, or new in the folder."""
_EVENT = struct.Struct("iIII")
"""``struct inotify_event`` without its name: wd, mask, cookie, length of the name."""

_libc = ctypes.CDLL(None, use_errno=True)
_HAS_INOTIFY = hasattr(_libc, "inotify_init1") and hasattr(_libc, "inotify_add_watch")


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
    return _checked(_libc.inotify_add_watch(fd, os.fsencode(folder), mask), str(folder))


def parse_events(data: bytes) -> list[tuple[int, str]]:
    """The (mask, file name) of each event in what one read of an inotify fd returned."""
    events = []
    offset = 0
    while offset + _EVENT.size <= len(data):
        _, mask, _, length = _EVENT.unpack_from(data, offset)
        offset += _EVENT.size
        name = data[offset : offset + length].rstrip(b"\0")
        offset += length
        events.append((mask, os.fsdecode(name)))
    return events


class FolderWatch:
    """Calls ``wake`` from the running loop whenever a file in ``folder`` is created, written
    or closed after writing; until ``close`` (or the end of a ``with`` block), which frees the
    inotify fd. A folder that does not exist yet is watched from the first ``attach`` after it
    appears; the follower calls ``attach`` before each read, and reads the whole file then."""

    def __init__(self, folder: Path, wake: Callable[[], None]) -> None:
        self.folder = folder
        self.wake = wake
        self._loop = asyncio.get_running_loop()
        self._fd: int | None = None
        self._watching = False
        self._timer: asyncio.TimerHandle | None = None
        try:
            self._fd = inotify_init()
        except OSError as error:
            self._poll(error)
            return
        self._loop.add_reader(self._fd, self._read)
        self.attach()

    def attach(self) -> None:
        if self._fd is None or self._watching:
            return
        try:
            add_watch(self._fd, self.folder, GROWS)
        except FileNotFoundError:
            return
        except OSError as error:  # watches used up, or a folder it may not read
            self._release()
            self._poll(error)
            return
        self._watching = True

    def _read(self) -> None:
        assert self._fd is not None
        try:
            data = os.read(self._fd, 64 * 1024)
        except BlockingIOError:
            return
        masks = [mask for mask, _ in parse_events(data)]
        if any(mask & IN_IGNORED for mask in masks):  # the folder went: watch it if it returns
            self._watching = False
        if any(mask & (GROWS | IN_IGNORED) for mask in masks):
            self.wake()

    def _poll(self, reason: OSError) -> None:
        log.info("following logs in %s every %g s: %s", self.folder, POLL_SECONDS, reason)
        self._tick()

    def _tick(self) -> None:
        self._timer = self._loop.call_later(POLL_SECONDS, self._tick)
        self.wake()

    def _release(self) -> None:
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        self._release()
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
