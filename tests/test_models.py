"""The API's wire models are its one source: the OpenAPI document and the labextension's
TypeScript types are generated from them and committed, so each must be what its generator
writes now; requests are validated against them with errors that name the field."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest

from jupyter_mlinfra import openapi
from jupyter_mlinfra.errors import InvalidInput, MLInfraError, TooLarge
from jupyter_mlinfra.jobs.spec import (
    Condition,
    ConditionName,
    JobSpec,
    JobState,
    JobStateName,
    RequestLimits,
    RetryPolicy,
)
from jupyter_mlinfra.jobs.submission import parse_submission
from jupyter_mlinfra.models.kernels import KernelStart
from jupyter_mlinfra.models.validation import validated
from tests import optional

LABEXTENSION = Path(__file__).parent.parent / "labextension"
SCHEMA_TS = LABEXTENSION / "src" / "schema.ts"


def test_the_openapi_document_is_what_the_models_write() -> None:
    assert openapi.DOCUMENT.read_text() == openapi.text(), (
        "jupyter_mlinfra/openapi.yaml is stale: run `python -m jupyter_mlinfra.openapi`"
    )


def test_the_typescript_types_are_what_openapi_typescript_writes(tmp_path: Path) -> None:
    node = shutil.which("node")
    optional.need(node is not None, "node is not installed (it builds the labextension too)")
    jlpm = Path(sys.executable).parent / "jlpm"
    optional.need(
        (LABEXTENSION / "node_modules" / ".bin" / "openapi-typescript").exists(),
        "labextension/node_modules lacks openapi-typescript: pip install -e '.[test]' installs it",
    )
    env = {**os.environ, "PATH": f"{jlpm.parent}{os.pathsep}{os.environ['PATH']}"}
    written = tmp_path / "schema.ts"
    result = subprocess.run(  # build:schema's command, writing elsewhere
        [str(jlpm), "run", "schema", "--output", str(written)],
        cwd=LABEXTENSION,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert SCHEMA_TS.read_text() == written.read_text(), (
        "labextension/src/schema.ts is stale: run `jlpm build:schema` in labextension/"
    )


def test_states_and_conditions_on_the_wire_are_the_domain_ones() -> None:
    assert get_args(JobStateName) == tuple(state.value for state in JobState)
    assert get_args(ConditionName) == tuple(condition.value for condition in Condition)


def test_every_operation_of_the_route_table_is_in_the_document_once() -> None:
    ids = [operation.operation_id for operation in openapi.OPERATIONS]
    assert len(ids) == len(set(ids))
    document = openapi.document()
    documented = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert sorted(documented) == sorted(ids)


LIMITS = RequestLimits(max_env_bytes=64, max_push_bytes=8, max_args_bytes=16)


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ([], None, "the request body must be a JSON object"),
        ({"code": "x", "gpus": 1}, "gpus", "'gpus': unknown field; known fields: name, code,"),
        ({"code": "x", "retry": {"others": 1}}, "retry.others", "'retry.others': unknown field"),
        ({"code": "x", "nodes": "2"}, "nodes", "nodes: must be a whole number, got str"),
        ({"code": "x", "nodes": True}, "nodes", "nodes: must be a whole number, got bool"),
        ({"code": "x", "nodes": 65}, "nodes", "nodes: must be between 1 and 64, got 65"),
        (
            {"code": "x", "procs_per_node": 0},
            "procs_per_node",
            "procs_per_node: must be between 1 and 256, got 0",
        ),
        (
            {"code": "x", "max_runtime_seconds": 0},
            "max_runtime_seconds",
            "max_runtime_seconds: must be more than 0",
        ),
        ({"code": "x", "name": "a b"}, "name", "name: must be letters, digits, '.', '_' or '-'"),
        ({"code": "x", "name": "n" * 64}, "name", "name: must be at most 63 characters, got 64"),
        ({"code": "x", "env": {"1A": "x"}}, "env", "env: '1A' is not an environment variable"),
        ({"code": "x", "env": {"A": None}}, "env", "env.A: must be a string, got NoneType"),
        ({"code": "x", "push": {"x": "AAA"}}, "push", "push.x: must be base64, got 'AAA'"),
        ({"code": "x", "pull": ["x\n"]}, "pull", "pull[0]: must be a Python variable name"),
        (
            {"code": "x", "retry": {"max_restarts": 101}},
            "retry.max_restarts",
            "retry.max_restarts: must be between 0 and 100",
        ),
        (
            {"code": "x", "retry": {"on_exit_codes": [256]}},
            "retry.on_exit_codes",
            "retry.on_exit_codes[0]: must be between 0 and 255",
        ),
        ({"script": "a\0b"}, "script", "script: must be text without a NUL character"),
        ({"code": "x", "script": "y"}, "code", "give exactly one of code (a cell) or script"),
        ({}, "code", "give exactly one of code (a cell) or script"),
        ({"code": "x", "args": ["a"]}, "args", "args: only a script takes arguments"),
    ],
)
def test_a_refused_submission_names_its_field(body: Any, field: str | None, message: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_submission(body, LIMITS)
    assert (refused.value.field, refused.value.status) == (field, 400)
    assert refused.value.message.startswith(message), refused.value.message


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"script": "s", "args": ["a" * 16]}, "args"),
        ({"code": "x", "env": {"A": "b" * 64}}, "env"),
        ({"code": "x", "push": {"x": "AAAAAAAAAAAA"}}, "push"),
    ],
)
def test_a_part_over_its_limit_is_a_413_naming_it(body: Any, field: str) -> None:
    with pytest.raises(TooLarge) as refused:
        parse_submission(body, LIMITS)
    assert refused.value.field == field
    assert f"(MLInfraApp.max_{field}_bytes)" in refused.value.message


def test_a_submission_becomes_its_spec_with_defaults_for_what_is_absent_or_null() -> None:
    spec = parse_submission(
        {"code": "pass", "nodes": None, "queue": "", "retry": {"max_restarts": 2}}, LIMITS
    )
    assert spec == JobSpec(code="pass", retry=RetryPolicy(max_restarts=2))


def test_a_kernel_start_is_read_strictly() -> None:
    assert validated(KernelStart, {"flavor": "cpu"}) == {"flavor": "cpu"}
    with pytest.raises(MLInfraError) as refused:
        validated(KernelStart, {"flavor": 5})
    assert (refused.value.field, refused.value.message) == (
        "flavor",
        "flavor: must be a string, got int",
    )


def test_every_jobs_operation_has_one_call_and_every_call_an_operation() -> None:
    from jupyter_mlinfra.jobs.serving import CALLS
    from jupyter_mlinfra.models import jobs

    assert set(CALLS) == {operation.operation_id for operation in jobs.OPERATIONS}
