"""The test kubelet's way to the real API server: JSON over HTTPS with a kubeconfig's identity
(a node's client certificate, or the admin's for what NodeRestriction refuses a kubelet), and
watches that survive what a real API server does to them.

Objects stay plain dicts, as they travel: the kubelet reads a few fields and patches status,
which a typed client would only convert back and forth."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml

log = logging.getLogger("tests.cluster.kubelet")

Obj = dict[str, Any]

#: reconnecting to an API server that does not answer (it is restarting): first delay and cap
RECONNECT = (0.1, 2.0)
#: a watch ends by itself after this long (the API server caps it too); then it resumes
WATCH_SECONDS = 300
#: how long a stopping watch is waited for (``Watch.stop``)
STOP_SECONDS = 5.0

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"


class ApiError(Exception):
    """A non-2xx answer: its HTTP status, the Status reason and message."""

    def __init__(self, status: int, body: str) -> None:
        try:
            loaded = json.loads(body)
        except ValueError:
            loaded = {}
        self.status = status
        self.reason = str(loaded.get("reason", ""))
        self.message = str(loaded.get("message", body))
        super().__init__(f"{status} {self.reason}: {self.message}")


def _ssl_context(user: dict[str, Any], cluster: dict[str, Any], folder: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(
        cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
    )
    if "client-certificate-data" in user:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        cert, key = folder / "client.crt", folder / "client.key"
        for path, field in ((cert, "client-certificate-data"), (key, "client-key-data")):
            path.touch(mode=0o600)
            path.write_bytes(base64.b64decode(user[field]))
        context.load_cert_chain(cert, key)
    return context


class Api:
    """One identity's connection to the API server (opened in the loop that uses it)."""

    def __init__(self, kubeconfig: Path, scratch: Path) -> None:
        config = yaml.safe_load(kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        self.server: str = cluster["server"]
        self._headers = {"Authorization": f"Bearer {user['token']}"} if "token" in user else {}
        self._ssl = _ssl_context(user, cluster, scratch)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=0),
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Obj:
        """The answer's JSON; ApiError for an HTTP error. Connection failures (the API server
        is restarting) are retried here, since the kubelet's work is to be done regardless."""
        data = None if body is None else json.dumps(body)
        delay, cap = RECONNECT
        while True:
            try:
                async with self.session.request(
                    method,
                    self.server + path,
                    data=data,
                    params=params,
                    headers={"Content-Type": content_type} if data is not None else None,
                ) as answer:
                    text = await answer.text()
                    if answer.status >= 300:
                        raise ApiError(answer.status, text)
                    loaded: Obj = json.loads(text) if text else {}
                    return loaded
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as error:
                log.debug("%s %s: %r; retrying", method, path, error)
            await asyncio.sleep(delay)
            delay = min(cap, delay * 2)

    async def get(self, path: str, params: dict[str, str] | None = None) -> Obj:
        return await self.request("GET", path, params=params)

    async def get_or_none(self, path: str) -> Obj | None:
        try:
            return await self.get(path)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def patch(self, path: str, body: Any, content_type: str = STRATEGIC) -> Obj:
        return await self.request("PATCH", path, body, content_type=content_type)

    async def post(self, path: str, body: Any) -> Obj:
        return await self.request("POST", path, body)

    async def delete(self, path: str, body: Any = None) -> Obj | None:
        """None when it is gone already."""
        try:
            return await self.request("DELETE", path, body)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def _watch_stream(
        self, path: str, params: dict[str, str]
    ) -> AsyncIterator[tuple[str, Obj]]:
        query = {
            **params,
            "watch": "1",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        async with self.session.get(self.server + path, params=query) as answer:
            if answer.status >= 300:
                raise ApiError(answer.status, await answer.text())
            async for line in answer.content:
                if line.strip():
                    event = json.loads(line)
                    yield event["type"], event["object"]


Handler = Callable[[str, Obj], Awaitable[None] | None]


class Watch:
    """List, then watch from the list's resourceVersion; after a dropped stream resume from the
    last version seen, after 410 Gone (compaction) list again, telling ``handler`` what changed
    meanwhile as ADDED/MODIFIED/DELETED. The kubelet's view of a collection, kept by events."""

    def __init__(self, api: Api, path: str, handler: Handler, **params: str) -> None:
        self.api = api
        self.path = path
        self.params = params
        self.handler = handler
        self.known: dict[tuple[str, str], Obj] = {}
        self.synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Cancel the watch, waiting for it a moment only: a watch cancelled in its stream's
        read can wait for ever in aiohttp's ``wait_for_close`` (seen under load: a node's stop,
        and the test's teardown, outlived their 120 s). Closing the session (``Api.close``)
        ends it then."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=STOP_SECONDS)

    @staticmethod
    def _key(obj: Obj) -> tuple[str, str]:
        metadata = obj["metadata"]
        return metadata.get("namespace", ""), metadata["name"]

    async def _emit(self, kind: str, obj: Obj) -> None:
        key = self._key(obj)
        if kind == "DELETED":
            self.known.pop(key, None)
        else:
            self.known[key] = obj
        try:
            result = self.handler(kind, obj)
            if result is not None:
                await result
        except asyncio.CancelledError:
            raise
        except Exception:  # one event's failure must not end the watch of all the others
            log.exception("watch %s: handling %s %s", self.path, kind, key)

    async def _relist(self) -> str:
        listed = await self.api.get(self.path, self.params)
        seen = set()
        for item in listed.get("items", []):
            key = self._key(item)
            seen.add(key)
            await self._emit("MODIFIED" if key in self.known else "ADDED", item)
        for key in [k for k in self.known if k not in seen]:
            await self._emit("DELETED", self.known[key])
        self.synced.set()
        version: str = listed["metadata"]["resourceVersion"]
        return version

    async def _run(self) -> None:
        version: str | None = None
        delay, cap = RECONNECT
        while True:
            try:
                if version is None:
                    version = await self._relist()
                async for kind, obj in self.api._watch_stream(
                    self.path, {**self.params, "resourceVersion": version}
                ):
                    delay = RECONNECT[0]
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            version = None  # compacted: list again
                            break
                        raise ApiError(int(obj.get("code", 500)), json.dumps(obj))
                    version = obj["metadata"]["resourceVersion"]
                    if kind != "BOOKMARK":
                        await self._emit(kind, obj)
                continue  # the stream ended (timeout, API server stopping): resume
            except ApiError as error:
                if error.status == 410:
                    version = None
                    continue
                log.warning("watch %s: %s", self.path, error)
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as error:
                log.debug("watch %s dropped: %r", self.path, error)
            await asyncio.sleep(delay)
            delay = min(cap, delay * 2)
