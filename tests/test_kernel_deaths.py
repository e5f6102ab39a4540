"""How a kernel's own death is told: the exit in words, noted once per death."""

from __future__ import annotations

import time

from jupyter_mlinfra.kernels.deaths import Deaths, process_exit_reason


def test_an_exit_code_in_words() -> None:
    assert process_exit_reason(1) == "the kernel process exited with code 1"
    assert process_exit_reason(-9) == (
        "the kernel process was killed by SIGKILL (as the out-of-memory killer does when memory "
        "runs out)"
    )
    assert process_exit_reason(-11) == "the kernel process was killed by SIGSEGV"
    assert process_exit_reason(-200) == "the kernel process was killed by signal 200"


def test_a_death_is_noted_and_told_once_until_the_kernel_lives_again() -> None:
    told: list[str] = []

    def tell() -> None:  # the browser tabs then read the kernels: the death is there already
        last = deaths.to_json("k")
        told.append(last["reason"] if last else "")

    deaths = Deaths(tell)
    assert deaths.to_json("k") is None
    alive_since = time.time() - 10
    deaths.died("k", "OOMKilled", alive_since)
    first = deaths.to_json("k")
    assert first is not None and first["reason"] == "OOMKilled"
    deaths.died("k", "the kernel process exited with code 1", alive_since)  # asked again
    assert deaths.to_json("k") == first
    deaths.died("k", "Evicted", time.time() + 1)  # restarted since, then died again
    second = deaths.to_json("k")
    assert second is not None and second["reason"] == "Evicted"
    assert told == ["OOMKilled", "Evicted"]  # each death told once, after it is noted
    deaths.forget_all_but({"other"})
    assert deaths.to_json("k") is None
