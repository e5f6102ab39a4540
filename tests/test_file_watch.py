"""The agent's watch on a log folder, on this machine's real inotify: a write wakes it, a
folder made later is watched from the next ``attach``, one inotify cannot watch falls back to
a timer, followers share one inotify fd, and the last to close frees it."""

from __future__ import annotations

import asyncio
import os
import struct
from pathlib import Path

from jupyter_mlinfra.backends.local.file_watch import (
    IN_CLOSE_WRITE,
    IN_MODIFY,
    FolderWatch,
    Inotify,
    parse_events,
)


def inotify_fds() -> int:
    """This process's inotify instances."""
    count = 0
    for entry in Path("/proc/self/fd").iterdir():
        try:
            count += os.readlink(entry) == "anon_inode:inotify"
        except FileNotFoundError:  # the fd listing itself, closed meanwhile
            continue
    return count


async def test_a_write_wakes_the_watch_and_closing_frees_its_fd(tmp_path: Path) -> None:
    before = inotify_fds()
    woke = asyncio.Event()
    with FolderWatch(Inotify(), tmp_path, woke.set):
        assert inotify_fds() == before + 1
        assert not woke.is_set()
        with (tmp_path / "rank-0.log").open("ab") as log:
            log.write(b"a line\n")
            log.flush()
            await asyncio.wait_for(woke.wait(), 60)
            woke.clear()
            log.write(b"another\n")
            log.flush()
            await asyncio.wait_for(woke.wait(), 60)
    assert inotify_fds() == before


async def test_followers_share_one_fd_which_the_last_to_leave_closes(tmp_path: Path) -> None:
    before = inotify_fds()
    inotify = Inotify()
    other = tmp_path / "other"
    other.mkdir()
    woke = [asyncio.Event() for _ in range(3)]
    first = FolderWatch(inotify, tmp_path, woke[0].set)
    with FolderWatch(inotify, tmp_path, woke[1].set), FolderWatch(inotify, other, woke[2].set):
        assert inotify_fds() == before + 1
        first.close()  # the folder stays watched for the second
        (tmp_path / "rank-0.log").write_bytes(b"a line\n")
        await asyncio.wait_for(woke[1].wait(), 60)
        (other / "rank-0.log").write_bytes(b"a line\n")
        await asyncio.wait_for(woke[2].wait(), 60)
        assert not woke[0].is_set()
        assert inotify_fds() == before + 1
    assert inotify_fds() == before


async def test_a_folder_made_later_is_watched_from_the_next_attach(tmp_path: Path) -> None:
    folder = tmp_path / "logs" / "1"
    woke = asyncio.Event()
    with FolderWatch(Inotify(), folder, woke.set) as watch:
        folder.mkdir(parents=True)
        watch.attach()
        (folder / "rank-0.log").write_bytes(b"a line\n")
        await asyncio.wait_for(woke.wait(), 60)


async def test_a_folder_inotify_cannot_watch_is_looked_at_on_a_timer(tmp_path: Path) -> None:
    before = inotify_fds()
    folder = tmp_path / ("x" * 5000)  # longer than a path may be: inotify refuses it
    wakes = 0
    twice = asyncio.Event()

    def wake() -> None:
        nonlocal wakes
        wakes += 1
        if wakes == 2:
            twice.set()

    with FolderWatch(Inotify(), folder, wake):
        assert inotify_fds() == before  # the instance it could not use is closed
        await asyncio.wait_for(twice.wait(), 60)
    assert inotify_fds() == before


def test_events_are_parsed_with_their_names() -> None:
    def event(mask: int, name: bytes) -> bytes:
        padded = name + b"\0" * (16 - len(name)) if name else b""
        return struct.pack("iIII", 3, mask, 0, len(padded)) + padded

    data = event(IN_MODIFY, b"rank-0.log") + event(IN_CLOSE_WRITE, b"rank-1.log") + event(0, b"")
    assert parse_events(data) == [
        (3, IN_MODIFY, "rank-0.log"),
        (3, IN_CLOSE_WRITE, "rank-1.log"),
        (3, 0, ""),
    ]
