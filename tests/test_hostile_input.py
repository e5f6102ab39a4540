"""Hostile input through a real jupyter server and its local agent (``jp_fetch``): wrong types,
sizes, encodings, nesting, unicode digits, in every field of every body and every query
parameter and path id of every route. Each answer is a 4xx with a JSON body whose ``field``
names what was wrong (when there is one) and whose message names it too; none is a 5xx.

Cases are grouped per route, one server each; a group reports every case that went wrong.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jupyter_mlinfra.transport import IDENTITY_HEADER, UnixHTTPConnection

from .agents import AgentHome
from .conftest import ME

UUID = "0000aaaa-0000-4000-8000-000000000000"
JOB = "0123456789ab"
DIGITS = ["\u0663", "\u00b2", "\uff11", "\u0967"]
"""Arabic-Indic three, superscript two, fullwidth one, Devanagari one: ``str.isdigit`` is
true of each, ``int`` reads some and fails on others."""


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    status: int
    field: str | None
    body: bytes | None = None
    params: Mapping[str, str | bytes] | None = None

    def __str__(self) -> str:
        params = {k: v[:40] for k, v in (self.params or {}).items()}
        return f"{self.method} {self.path[:80]} {params} {(self.body or b'')[:80]!r}"


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


async def refused_as_said(jp_fetch: Any, cases: Sequence[Case]) -> None:
    """Fail with every case that got what it should not: another status or field, a body
    that is not JSON, a message that does not name the field."""
    found = await problems(jp_fetch, cases)
    assert not found, f"{len(found)} of {len(cases)} cases:\n" + "\n".join(found)


async def problems(jp_fetch: Any, cases: Sequence[Case]) -> list[str]:
    found = []
    for case in cases:
        response = await jp_fetch(
            "mlinfra", "api", "v1", *case.path.split("/"),
            method=case.method, body=case.body, params=case.params, raise_error=False,
        )  # fmt: skip
        kind = response.headers.get("Content-Type", "")
        try:
            answer = json.loads(response.body)
        except ValueError:
            found.append(f"{case}: {response.code} {kind} not JSON: {response.body[:120]!r}")
            continue
        got = (response.code, answer.get("field"))
        if got != (case.status, case.field) or not kind.startswith("application/json"):
            said = {k: str(v)[:200] for k, v in answer.items()}
            found.append(f"{case}: got {got} {kind}, want {(case.status, case.field)}: {said}")
        elif case.field and case.status != 404 and case.field not in answer.get("message", ""):
            found.append(f"{case}: the message does not name {case.field!r}: {answer}")
    return found


@pytest.fixture
def mlinfra_config(mlinfra_config: dict[str, Any]) -> dict[str, Any]:
    return {**mlinfra_config, "admin_users": [ME]}  # so PATCH jobs/{id} reads its body


# --- POST jobs: every field -------------------------------------------------------------------

TEXT_FIELDS = (
    "name",
    "flavor",
    "environment",
    "priority",
    "queue",
    "working_dir",
    "idempotency_key",
)
WRONG_TYPES: list[Any] = [5, True, 1.5, [], {}]


def submissions() -> list[tuple[dict[str, Any], int, str]]:
    """(body, status, field) of submissions that must be refused."""
    cases: list[tuple[dict[str, Any], int, str]] = []
    script = {"script": "train.py"}
    for name in (*TEXT_FIELDS, "code", "script"):
        base = script if name == "code" else {"code": "pass"}
        if name == "script":
            base = {}
        cases += [({**base, name: wrong}, 400, name) for wrong in WRONG_TYPES]
    for name in ("nodes", "procs_per_node"):
        wrongs = ["1", 1.5, True, 10**30, -1, *DIGITS, "\u0661\u0660"]
        cases += [({"code": "pass", name: wrong}, 400, name) for wrong in wrongs]
    for wrong in ["10", True, 0, -1, 1e10, [], {}]:
        cases.append(({"code": "pass", "max_runtime_seconds": wrong}, 400, "max_runtime_seconds"))
    for wrong in ["x", {"a": "b"}, [1], [None], [["x"]]]:
        cases.append(({**script, "args": wrong}, 400, "args"))
        cases.append(({"code": "pass", "pull": wrong}, 400, "pull"))
    for wrong in ["x", [1], {"A": 1}, {"A": None}, {"1A": "x"}, {"A-B": "x"}, {"A\n": "x"}]:
        cases.append(({"code": "pass", "env": wrong}, 400, "env"))
    for wrong in ["x", [1], {"x": 1}, {"1x": "AAAA"}, {"x": "not base64!"}, {"x": "AAA"}]:
        cases.append(({"code": "pass", "push": wrong}, 400, "push"))
    cases += [
        ({"code": "pass", "pull": ["x\n"]}, 400, "pull"),  # a regex's $ matches before \n
        ({"code": "pass", "name": "job\n"}, 400, "name"),
        ({"code": "pass", "name": "a b"}, 400, "name"),
        ({"code": "pass", "retry": "x"}, 400, "retry"),
        ({"code": "pass", "retry": [1]}, 400, "retry"),
        ({"code": "pass", "retry": {"max_restarts": "1"}}, 400, "retry.max_restarts"),
        ({"code": "pass", "retry": {"max_restarts": 101}}, 400, "retry.max_restarts"),
        ({"code": "pass", "retry": {"on_exit_codes": [256]}}, 400, "retry.on_exit_codes"),
        ({"code": "pass", "retry": {"on_exit_codes": "1"}}, 400, "retry.on_exit_codes"),
        ({"code": "pass", "retry": {"others": 1}}, 400, "retry.others"),
        ({"code": "pass", "gpus": 1}, 400, "gpus"),
        # sizes
        ({"code": "pass", "name": "n" * 64}, 400, "name"),
        ({"code": "pass", "flavor": "f" * 10_000}, 400, "flavor"),
        ({"code": "pass", "idempotency_key": "k" * 256}, 400, "idempotency_key"),
        ({"code": "x" * 1_000_001}, 400, "code"),
        ({"script": "s" * 4097}, 400, "script"),
        ({"code": "pass", "working_dir": "w" * 4097}, 400, "working_dir"),
        ({"code": "pass", "nodes": 65}, 400, "nodes"),
        ({"code": "pass", "procs_per_node": 257}, 400, "procs_per_node"),
        # what no process can take: NUL in what becomes a path, an argument, the environment
        ({"script": "train\0.py"}, 400, "script"),
        ({**script, "args": ["--lr", "0\0"]}, 400, "args"),
        ({"code": "pass", "env": {"A": "x\0y"}}, 400, "env"),
        ({"code": "pass", "working_dir": "/tmp\0"}, 400, "working_dir"),
    ]
    return cases


async def test_every_field_of_a_submission(jp_fetch: Any) -> None:
    cases = [
        Case("POST", "jobs", status, field, body(sent)) for sent, status, field in submissions()
    ]
    await refused_as_said(jp_fetch, cases)


# --- bodies that are not plain JSON, on every route that reads one ----------------------------

BODY_ROUTES = [
    ("POST", "jobs"),
    ("PATCH", f"jobs/{JOB}"),
    ("POST", "kernels"),
    ("PATCH", f"kernels/{UUID}"),
]
FIRST_FIELD = {
    "jobs": "code",
    f"jobs/{JOB}": "priority",
    "kernels": "flavor",
    f"kernels/{UUID}": "flavor",
}
SHAPE_FIELD = {f"jobs/{JOB}": "priority"}
"""Where a body that is no object, or has other fields, is said to be wrong: a priority change
is nothing but ``{"priority": CLASS}``."""


async def test_malformed_bodies_on_every_route(jp_fetch: Any) -> None:
    cases = []
    for method, path in BODY_ROUTES:
        field = FIRST_FIELD[path]
        cases += [
            Case(method, path, 400, None, b'{"' + field.encode() + b'": "\xff\xfe"}'),
            Case(method, path, 400, field, b'{"' + field.encode() + b'": "x\\ud800"}'),
            Case(method, path, 400, None, b'{"\\udfff": "x"}'),
            Case(method, path, 400, None, b"[" * 100_000 + b"]" * 100_000),
            Case(
                method,
                path,
                400,
                field,
                b'{"' + field.encode() + b'": ' + b"[" * 40 + b"]" * 40 + b"}",
            ),
            Case(method, path, 400, None, b'{"' + field.encode() + b'": NaN}'),
            Case(method, path, 400, None, b'{"' + field.encode() + b'": 1' + b"0" * 5000 + b"}"),
            Case(method, path, 400, SHAPE_FIELD.get(path), b"[1, 2]"),
            Case(method, path, 400, SHAPE_FIELD.get(path), b'"text"'),
            Case(method, path, 400, None, b"{'single': 'quotes'}"),
            Case(method, path, 400, field, body({field: 5})),
            Case(method, path, 400, SHAPE_FIELD.get(path, "bogus"), body({field: "x", "bogus": 1})),
        ]
    cases += [
        Case("PATCH", f"jobs/{JOB}", 400, "priority", body({"priority": {}})),
        Case("PATCH", f"jobs/{JOB}", 400, "priority", body({"priority": "p" * 10_000})),
        Case("PATCH", f"jobs/{JOB}", 400, "priority", body({})),
    ]
    await refused_as_said(jp_fetch, cases)


# --- query parameters and path ids of every route ---------------------------------------------


async def test_every_query_parameter(jp_fetch: Any) -> None:
    cursor = f"1764000000.5:{JOB}"
    bad: list[tuple[str, str, str | bytes]] = [
        ("flavors", "all", "maybe"),
        ("flavors", "all", ""),
        ("flavors", "all", "True"),
        ("flavors", "all", b"\xff"),
        *[("flavors", "all", digit) for digit in DIGITS],
        ("jobs", "limit", "0"),
        ("jobs", "limit", ""),
        ("jobs", "limit", "1001"),
        ("jobs", "limit", "ten"),
        ("jobs", "limit", "9" * 30),
        ("jobs", "limit", "1e3"),
        *[("jobs", "limit", digit) for digit in DIGITS],
        ("jobs", "limit", b"\xc3"),
        ("jobs", "state", "bogus"),
        ("jobs", "state", "queued,bogus"),
        ("jobs", "state", "s" * 256),
        ("jobs", "owner", "o" * 256),
        ("jobs", "owner", b"\xed\xa0\x80"),  # a surrogate, UTF-8-encoded
        ("jobs", "flavor", "f" * 256),
        ("jobs", "flavor", " " * 256),  # as sent: not stripped to nothing
        ("jobs", "before", "\t"),
        ("jobs", "limit", "5 "),
        ("jobs", "queue", "q" * 256),
        ("jobs", "before", "yesterday"),
        ("jobs", "before", f"nan:{JOB}"),
        ("jobs", "before", f"inf:{JOB}"),
        ("jobs", "before", f"1_0:{JOB}"),
        ("jobs", "before", f"\u0661.5:{JOB}"),
        ("jobs", "before", "1764000000.5:not-a-job-id"),
        ("jobs", "before", cursor + "0" * 300),
        (f"jobs/{JOB}/logs", "rank", "-1"),
        (f"jobs/{JOB}/logs", "rank", "1.0"),
        (f"jobs/{JOB}/logs", "rank", "99999999"),
        *[(f"jobs/{JOB}/logs", "rank", digit) for digit in DIGITS],
        (f"jobs/{JOB}/logs", "tail", "all"),
        (f"jobs/{JOB}/logs", "tail", ""),
        (f"jobs/{JOB}/logs", "rank", ""),
        (f"jobs/{JOB}/logs", "tail", "9" * 30),
        *[(f"jobs/{JOB}/logs", "tail", digit) for digit in DIGITS],
        (f"jobs/{JOB}/logs", "follow", "yes"),
        (f"jobs/{JOB}/logs", "follow", ""),
        (f"jobs/{JOB}/logs", "follow", b"\xff"),
    ]
    cases = [Case("GET", path, 400, name, params={name: value}) for path, name, value in bad]
    await refused_as_said(jp_fetch, cases)


async def test_ids_and_names_in_paths(jp_fetch: Any) -> None:
    """A path id that is not one (unicode digits, upper case, too long) matches no route: a
    JSON 404, as an unknown path under the API is."""
    ids = [
        "\u0661" * 12,
        JOB.upper(),
        JOB + "0",
        JOB[:-1] + "\u0663",
        "x" * 10_000,
    ]
    cases = []
    for job_id in ids:
        cases += [
            Case("GET", f"jobs/{job_id}", 404, None),
            Case("DELETE", f"jobs/{job_id}", 404, None),
            Case("POST", f"jobs/{job_id}/retry", 404, None, b""),
            Case("GET", f"jobs/{job_id}/logs", 404, None),
        ]
    for kernel_id in [UUID.upper(), UUID.replace("4", "\u0664"), UUID + "0", "k" * 10_000]:
        cases += [Case("GET", f"kernels/{kernel_id}", 404, None)]
    for name in ["cpu\u0663", "c p u", "cpu/more"]:
        cases += [Case("GET", f"flavors/{name}", 404, None)]
    cases += [Case("GET", f"flavors/{'x' * 10_000}", 404, "flavor")]  # a name, of no flavor
    cases += [
        Case("GET", f"jobs/{JOB}", 404, "id"),
        Case("GET", f"kernels/{UUID}", 404, "kernel_id"),
    ]
    await refused_as_said(jp_fetch, cases)


# --- kernels: fields and the working directory ------------------------------------------------


async def test_kernel_fields_and_paths_outside_the_root(jp_fetch: Any, jp_root_dir: Path) -> None:
    (jp_root_dir / "notebooks").mkdir()
    (jp_root_dir / "notebooks" / "out").symlink_to("/")
    (jp_root_dir / "up").symlink_to("..")
    cases = [
        Case("POST", "kernels", 400, "path", body({"path": path}))
        for path in [
            "../../../etc",
            "notebooks/../../etc",
            "/etc",
            "//etc",
            "notebooks/out/etc",
            "notebooks/out",
            "up",
            "up/x.ipynb",
            "notebooks/\0",
            "p" * 5000,
        ]
    ]
    for name in ("environment", "flavor", "path"):
        cases += [Case("POST", "kernels", 400, name, body({name: wrong})) for wrong in WRONG_TYPES]
        cases.append(Case("POST", "kernels", 400, name, body({name: None})))
    await refused_as_said(jp_fetch, cases)
    assert os.path.islink(jp_root_dir / "up")  # the links were there: refused for leading out


# --- limits -----------------------------------------------------------------------------------


class TestLimits:
    @pytest.fixture
    def mlinfra_config(self, mlinfra_config: dict[str, Any]) -> dict[str, Any]:
        return {
            **mlinfra_config,
            "max_request_bytes": 64 * 1024,
            "max_push_bytes": 1024,
            "max_env_bytes": 256,
            "max_args_bytes": 256,
        }

    async def test_over_a_limit_is_a_413_naming_it(self, jp_fetch: Any) -> None:
        big = "x" * (64 * 1024)
        cases = [
            Case("POST", "jobs", 413, None, body({"code": big})),
            Case("PATCH", f"jobs/{JOB}", 413, None, body({"priority": big})),
            Case("POST", "kernels", 413, None, body({"path": big})),
            Case("PATCH", f"kernels/{UUID}", 413, None, body({"flavor": big})),
            Case("POST", "jobs", 413, "push", body({"code": "1", "push": {"x": "AAAA" * 257}})),
            Case(
                "POST",
                "jobs",
                413,
                "push",
                body({"code": "1", "push": {"a": "A" * 512, "b": "A" * 516}}),
            ),
            Case("POST", "jobs", 413, "env", body({"code": "1", "env": {"A": "x" * 254}})),
            Case("POST", "jobs", 413, "args", body({"script": "s.py", "args": ["x" * 128] * 2})),
        ]
        await refused_as_said(jp_fetch, cases)
        for case in cases[:4]:  # the body's limit says which setting to raise
            response = await jp_fetch(
                "mlinfra", "api", "v1", *case.path.split("/"),
                method=case.method, body=case.body, raise_error=False,
            )  # fmt: skip
            assert "MLInfraApp.max_request_bytes" in json.loads(response.body)["message"]

    async def test_within_the_limits_a_job_is_queued(self, jp_fetch: Any) -> None:
        sent = {
            "script": "s.py",
            "args": ["x" * 100] * 2,
            "env": {"A": "x" * 200},
            "push": {"x": "AAAA" * 256},
            "max_runtime_seconds": 1e9,
        }
        response = await jp_fetch("mlinfra", "api", "v1", "jobs", method="POST", body=body(sent))
        assert response.code == 201
        job = json.loads(response.body)
        await jp_fetch("mlinfra", "api", "v1", "jobs", job["id"], method="DELETE")


async def test_the_agent_answers_an_unknown_path_in_json(
    jp_fetch: Any, agent_home: AgentHome
) -> None:
    """What the CLI meets when it talks to the agent itself, without a server."""
    await jp_fetch("mlinfra", "api", "v1", "jobs")  # the server starts the agent
    connection = UnixHTTPConnection(agent_home.socket, timeout=10)
    try:
        me = json.dumps({"user": ME})
        connection.request("GET", "/mlinfra/api/v1/nope", headers={IDENTITY_HEADER: me})
        response = connection.getresponse()
        answer = json.loads(response.read())
    finally:
        connection.close()
    assert (response.status, answer) == (
        404,
        {"message": "no such path: '/mlinfra/api/v1/nope'", "field": None},
    )
