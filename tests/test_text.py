"""Text for people that the end-to-end tests cannot easily make: the kernels table for kernels
still starting on a cluster or restarted after the OOM killer; rank lines and job histories."""

from __future__ import annotations

from typing import Any

from jupyter_mlinfra.text import job_history, kernel_rows, rank_sentence

NOW = 10_000.0


def kernel(**overrides: Any) -> dict[str, Any]:
    return {
        "id": "k1", "owner": "ada", "flavor": "a100x1", "environment": "pytorch",
        "devices": [], "state": "running", "phase": "ready", "since": NOW - 600, "reason": "",
        "last_activity": NOW - 65, "last_exit": None, **overrides,
    }  # fmt: skip


def test_starting_running_and_restarted_kernels() -> None:
    starting = kernel(
        state="starting", phase="pulling", reason='Pulling image "pytorch"', since=NOW - 12
    )
    restarted = kernel(
        id="k2", devices=[0, 1], last_exit={"at": NOW - 30, "reason": "OOMKilled: out of memory"}
    )
    _, first, second = kernel_rows({"kernels": [starting, restarted]}, now=NOW)
    assert first == (
        "k1", "ada", "a100x1", "pytorch", "starting: pulling", "-", "-",
        'Pulling image "pytorch" (12s)',
    )  # fmt: skip
    assert second == (
        "k2", "ada", "a100x1", "pytorch", "running", "0,1", "1m05s",
        "restarted 30s ago after: OOMKilled: out of memory",
    )  # fmt: skip


def test_a_rank_stopped_by_a_signal_says_where() -> None:
    stopped = [
        "working 1",
        "mlinfra: rank 1 stopped by SIGTERM (exit code 143) in:",
        '  File "<cell>", line 3, in <module>',
        "    time.sleep(1)",
    ]
    assert (
        rank_sentence(1, "cancelled", stopped)
        == "rank 1 stopped by SIGTERM while in `time.sleep(1)`"
    )


def test_rank_sentences_for_each_state() -> None:
    traceback = [
        "Traceback (most recent call last):",
        '  File "<cell>", line 2, in f',
        "ValueError: boom",
    ]
    assert rank_sentence(0, "failed", traceback) == "rank 0 failed with ValueError: boom"
    assert rank_sentence(0, "running", ["step 3", ""]) == "rank 0 is running; last printed `step 3`"
    assert rank_sentence(1, "running", []) == "rank 1 is running"
    assert rank_sentence(1, "succeeded", ["done"]) == "rank 1 succeeded; last printed `done`"
    assert (
        rank_sentence(1, "failed", ["x"]) == "rank 1 stopped when the job failed; last printed `x`"
    )
    assert rank_sentence(0, "cancelled", []) == "rank 0 was cancelled"


def test_the_history_does_not_repeat_a_condition_as_its_reason() -> None:
    job = {
        "id": "0123456789ab", "name": "j", "state": "succeeded", "nodes": 1, "procs_per_node": 1,
        "flavor": "cpu", "position": None, "reason": "", "eta": None, "eta_basis": "",
        "started": NOW, "finished": NOW + 5, "exit_code": 0, "message": "",
    }  # fmt: skip
    events = [
        {"time": NOW, "condition": "Queued", "reason": "", "message": ""},
        {"time": NOW, "condition": "Admitted", "reason": "Admitted", "message": "devices 0"},
        {"time": NOW, "condition": "Started", "reason": "Started", "message": "1 ranks"},
        {"time": NOW, "condition": "Finished", "reason": "succeeded", "message": ""},
    ]
    lines = job_history(job, events).splitlines()
    assert lines[0] == "j: succeeded in 5s"
    assert [line.split(maxsplit=1)[1] for line in lines[1:]] == [
        "Queued",
        "Admitted      devices 0",
        "Started       1 ranks",
        "Finished      succeeded",
    ]
