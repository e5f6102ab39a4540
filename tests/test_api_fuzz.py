"""Schemathesis against a real ``jupyter lab`` with the extension and its local agent.

Every operation of the OpenAPI document the server serves, with data the document allows and
data it forbids, through schemathesis' coverage, fuzzing and stateful phases (the document's
links: submit a job, then get, cancel, retry, reprioritise it and read its logs, events and
result; start a kernel, then get, switch and stop it), must answer without a 5xx and as the
document says: status codes, content types, headers and body schemas; every request the
document forbids gets a 4xx; a request without credentials gets a 401. Which checks run, and
why two do not: ``tests/schemathesis.toml``.

Bounded for CI: MLINFRA_FUZZ_EXAMPLES cases per operation and phase (default 25), from the
seed MLINFRA_FUZZ_SEED (default fixed, so CI runs the same cases; set another to explore).
The user is an admin, so that the admin-only operations are exercised too; one job runs at a
time, so that fuzzed jobs queue rather than fill the machine with rank processes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jupyter_mlinfra.handlers import openapi_document

from .conftest import ME
from .lab_server import LabServer

EXAMPLES = int(os.environ.get("MLINFRA_FUZZ_EXAMPLES", "25"))
SEED = int(os.environ.get("MLINFRA_FUZZ_SEED", "20261206"))
OPERATIONS = sum(len(set(path) - {"parameters"}) for path in openapi_document()["paths"].values())
"""Operations in ``openapi.yaml``: all must be tested, but for the one that serves the document
(schemathesis leaves it out)."""
CONFIG = Path(__file__).with_name("schemathesis.toml")
RUN_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def lab_config() -> dict[str, Any]:
    return {
        "local_accelerators": [{"index": i, "model": "A100-SXM4-80GB"} for i in range(4)],
        "admin_users": [ME],
        "default_quota": {"max_running_jobs": 1, "max_queued_jobs": 20},
        "preemption_grace_seconds": 2,  # a cancelled rank that ignores SIGTERM: 2 s, not 30
    }


@pytest.mark.timeout(RUN_TIMEOUT_S + 120)  # and the module's lab starting on a loaded machine
def test_every_operation_answers_as_documented(lab: LabServer, tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run",
        lab.url("mlinfra/api/v1/openapi.json"),
        "--url", lab.url("mlinfra/api/v1"),
        "--header", f"Authorization: token {lab.token}",
        "--max-examples", str(EXAMPLES),
        "--seed", str(SEED),
        "--workers", "1",
        "--request-timeout", "60",  # a kernel start on a loaded machine
        "--no-color",
    ]  # fmt: skip
    run = subprocess.run(
        command,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false"},
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    assert re.search(rf"Tested: {OPERATIONS - 1}\b", report), report  # none skipped
    assert re.search(r"API Links:\s+[1-9][0-9]* covered", report), report  # stateful ran
