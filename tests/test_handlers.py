"""The REST API through a real jupyter server (pytest-jupyter), every endpoint and error path."""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

import jsonschema
import pytest
from jupyter_server.auth import Authorizer
from tornado.httpclient import HTTPClientError
from tornado.websocket import WebSocketHandler

from jupyter_mlinfra.handlers import UnknownPathHandler, openapi_document
from jupyter_mlinfra.routes import default_handlers

from .conftest import ME

API_ROUTES = [
    (p, h)
    for p, h in default_handlers
    if h is not UnknownPathHandler and not issubclass(h, WebSocketHandler)
]
"""The routes the OpenAPI document describes as paths: all but the JSON 404 of any other path
and the websockets (``x-websockets``)."""


async def get(jp_fetch: Any, path: str, **kwargs: Any) -> Any:
    response = await jp_fetch("mlinfra", "api", "v1", path, **kwargs)
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    return json.loads(response.body)


async def error(jp_fetch: Any, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(HTTPClientError) as raised:
        await jp_fetch("mlinfra", "api", "v1", path, **kwargs)
    response = raised.value.response
    assert response is not None
    return raised.value.code, json.loads(response.body)


def conforms(body: Any, schema_name: str) -> None:
    """Validate a response against the OpenAPI document's schema, refs resolved."""
    document = openapi_document()
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": document["components"]}
    jsonschema.Draft202012Validator(schema).validate(body)  # OpenAPI 3.1's schemas


async def test_flavors_lists_entitled_flavors_with_live_availability(jp_fetch: Any) -> None:
    body = await get(jp_fetch, "flavors")
    conforms(body, "FlavorList")
    assert body["default_flavor"] == "cpu"
    names = [f["name"] for f in body["flavors"]]
    assert names == ["cpu", "a100x1"]  # a100x4 belongs to somebody else
    a100 = body["flavors"][1]
    assert a100["accelerator"] == {"kind": "nvidia.com/gpu", "model": "A100", "count": 1}
    assert a100["price_per_hour"] == 1.5
    assert a100["entitled"] is True
    assert a100["availability"]["available"] is True
    assert "4 of 4 A100 free" in a100["availability"]["summary"]


async def test_flavors_all_shows_the_others_disabled(jp_fetch: Any) -> None:
    body = await get(jp_fetch, "flavors", params={"all": "true"})
    conforms(body, "FlavorList")
    other = {f["name"]: f for f in body["flavors"]}["a100x4"]
    assert other["entitled"] is False
    assert other["availability"]["available"] is False
    assert ME in other["availability"]["summary"]


async def test_bad_query_flag_is_a_400_naming_it(jp_fetch: Any) -> None:
    code, body = await error(jp_fetch, "flavors", params={"all": "maybe"})
    assert code == 400
    assert body["field"] == "all"
    assert "'all' must be true or false" in body["message"]


async def test_one_flavor_and_its_errors(jp_fetch: Any) -> None:
    flavor = await get(jp_fetch, "flavors/a100x1")
    conforms(flavor, "Flavor")
    assert flavor["name"] == "a100x1"
    code, body = await error(jp_fetch, "flavors/nope")
    assert (code, body["field"]) == (404, "flavor")
    assert "unknown flavor 'nope'" in body["message"]
    code, body = await error(jp_fetch, "flavors/a100x4")
    assert (code, body["field"]) == (403, "flavor")
    assert f"user {ME!r} may not use flavor 'a100x4'" == body["message"]


async def test_environments_are_filtered_by_entitlement(jp_fetch: Any) -> None:
    body = await get(jp_fetch, "environments")
    conforms(body, "EnvironmentList")
    assert [e["name"] for e in body["environments"]] == ["python", "pytorch"]
    assert body["default_environment"] == "python"


async def test_capacity_reports_the_detected_machine(jp_fetch: Any) -> None:
    body = await get(jp_fetch, "capacity")
    conforms(body, "Capacity")
    assert body["backend"] == "local"
    assert body["cpu"]["total"] >= 1
    assert body["memory"]["total_bytes"] > 0
    [gpus] = body["accelerators"]
    assert (gpus["model"], gpus["total"], gpus["free"]) == ("A100-SXM4-80GB", 4, 4)
    assert [d["index"] for d in gpus["devices"]] == [0, 1, 2, 3]


async def test_whoami_gives_groups_quota_and_usage(jp_fetch: Any) -> None:
    body = await get(jp_fetch, "whoami")
    conforms(body, "Whoami")
    assert body["user"] == ME
    assert body["groups"] == ["gpu-users"]
    assert body["admin"] is False
    # the group quota replaces the default; unset fields are unlimited
    assert body["quota"] == {"max_gpus": 4, "max_running_jobs": None, "max_queued_jobs": 10}
    assert body["usage"] == {"gpus": 0, "running_jobs": 0, "queued_jobs": 0, "kernels": 0}
    assert body["flavors"] == ["cpu", "a100x1"]
    assert (body["priorities"], body["default_priority"]) == (["normal"], "normal")


def _templated(pattern: str) -> str:
    """A route regex as an OpenAPI path template: ``(?P<name>...)`` becomes ``{name}``."""
    return re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern)


async def test_openapi_document_is_valid_and_matches_the_routes(jp_fetch: Any) -> None:
    from openapi_spec_validator import validate

    document = await get(jp_fetch, "openapi.json")
    validate(document)
    prefix = document["servers"][0]["url"]
    routes = {_templated(pattern) for pattern, _ in API_ROUTES}
    assert {prefix + path for path in document["paths"]} == routes
    for pattern, handler in API_ROUTES:
        path = _templated(pattern).removeprefix(prefix)
        implemented = {
            method
            for method in ("get", "post", "put", "patch", "delete")
            if getattr(handler, method).__module__.startswith("jupyter_mlinfra.")
        }
        assert set(document["paths"][path]) - {"parameters"} == implemented, path


def test_openapi_document_describes_the_websockets() -> None:
    document = openapi_document()
    prefix = document["servers"][0]["url"]
    sockets = {p for p, h in default_handlers if issubclass(h, WebSocketHandler)}
    assert {prefix + path for path in document["x-websockets"]} == sockets
    live = document["x-websockets"]["/live"]["message"]
    assert live == {"$ref": "#/components/schemas/LiveMessage"}
    kinds = document["components"]["schemas"]["LiveMessage"]["discriminator"]["mapping"]
    assert set(kinds) == {"hello", "job", "kernels", "capacity", "live"}


SAMPLE_IDS = {
    "name": "cpu",
    "job_id": "0123456789ab",
    "kernel_id": "0000aaaa-0000-4000-8000-000000000000",
}


def _operations() -> list[tuple[str, str]]:
    """(method, path below the API) of every operation, with sample ids in the paths."""
    document = openapi_document()
    return [
        (method.upper(), re.sub(r"{(\w+)}", lambda m: SAMPLE_IDS[m[1]], path).lstrip("/"))
        for path, item in document["paths"].items()
        for method in item
        if method != "parameters"
    ]


async def test_without_credentials_every_operation_is_a_401(jp_fetch: Any) -> None:
    """401 (log in), not jupyter_server's 403 (not allowed), whatever the method: also before
    the XSRF check that refuses a POST without a cookie's token."""
    wrong = []
    for method, path in [*_operations(), ("GET", "no/such/path"), ("DELETE", "jobs/x")]:
        body = b"{}" if method in ("POST", "PATCH") else None
        response = await jp_fetch(
            "mlinfra", "api", "v1", *path.split("/"), method=method, body=body,
            headers={"Authorization": ""}, raise_error=False,
        )  # fmt: skip
        answer = json.loads(response.body)
        if (
            response.code != 401
            or response.headers.get("WWW-Authenticate") != 'token realm="jupyter-mlinfra"'
            or "authentication required" not in answer["message"]
        ):
            wrong.append(f"{method} {path}: {response.code} {answer}")
    assert wrong == []
    preflight = await jp_fetch(  # CORS preflight, which browsers send without credentials
        "mlinfra", "api", "v1", "jobs", method="OPTIONS", headers={"Authorization": ""},
        raise_error=False,
    )  # fmt: skip
    assert preflight.code in (200, 204)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "nope"),
        ("GET", "jobsx"),
        ("GET", "jobs/not-an-id"),
        ("POST", "jobs/0123456789ab/nope"),
        ("DELETE", "flavors/cpu/more"),
        ("PATCH", "kernels/not-a-uuid"),
        ("PUT", "mlinfra"),
    ],
)
async def test_an_unknown_path_under_the_api_is_a_json_404(
    jp_fetch: Any, method: str, path: str
) -> None:
    response = await jp_fetch(
        "mlinfra", "api", "v1", *path.split("/"), method=method,
        body=b"{}" if method in ("POST", "PATCH", "PUT") else None, raise_error=False,
    )  # fmt: skip
    assert response.code == 404
    assert response.headers["Content-Type"].startswith("application/json")
    assert json.loads(response.body) == {
        "message": f"no such API path: '/mlinfra/api/v1/{path}'",
        "field": None,
    }


async def test_a_method_a_route_lacks_is_a_405_saying_which_it_has(jp_fetch: Any) -> None:
    response = await jp_fetch(
        "mlinfra", "api", "v1", "jobs", method="PUT", body=b"{}", raise_error=False
    )
    assert response.code == 405
    assert response.headers["Allow"] == "GET, POST, OPTIONS"  # OPTIONS: CORS preflight
    assert json.loads(response.body)["message"] == "Method Not Allowed"


class DenyMLInfra(Authorizer):
    """Allows everything except the ``mlinfra`` resource, and records what it was asked."""

    asked: ClassVar[list[tuple[str, str]]] = []

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        DenyMLInfra.asked.append((action, resource))
        return resource != "mlinfra"


class TestAuthorizer:
    @pytest.fixture
    def jp_server_config(self, jp_server_config: dict[str, Any]) -> dict[str, Any]:
        return {
            **jp_server_config,
            "ServerApp": {**jp_server_config["ServerApp"], "authorizer_class": DenyMLInfra},
        }

    @pytest.mark.parametrize(
        "path", ["flavors", "flavors/cpu", "environments", "capacity", "whoami", "openapi.json"]
    )
    async def test_every_endpoint_asks_the_authorizer_for_mlinfra(
        self, jp_fetch: Any, path: str
    ) -> None:
        DenyMLInfra.asked.clear()
        code, _ = await error(jp_fetch, path)
        assert code == 403
        assert DenyMLInfra.asked == [("read", "mlinfra")]


def test_every_handler_method_requires_authentication() -> None:
    """The check jupyter_server runs at start-up, made explicit: no handler is left open."""
    from jupyter_server.serverapp import ServerWebApplication

    open_methods = [
        problem
        for pattern, handler in default_handlers
        for problem in ServerWebApplication._check_handler_auth(None, pattern, handler)
    ]
    assert open_methods == []
