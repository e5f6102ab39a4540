"""The Secrets and ConfigMaps that a node's pods use, each watched by name (what the Node
authorizer lets a kubelet read: objects its pods refer to), so that volumes and env follow
changes at once. Kueue's and JobSet's managers write their webhook certificate into a Secret
after they start and wait for the files of that Secret's volume: this is what delivers them."""

from __future__ import annotations

import base64
from collections.abc import Callable

from .api import Api, Obj, Watch

Key = tuple[str, str, str]  # kind ("secret"/"configmap"), namespace, name


def decoded(kind: str, obj: Obj) -> dict[str, bytes]:
    if kind == "secret":
        return {key: base64.b64decode(value) for key, value in (obj.get("data") or {}).items()}
    data = {key: value.encode() for key, value in (obj.get("data") or {}).items()}
    data.update(
        {key: base64.b64decode(value) for key, value in (obj.get("binaryData") or {}).items()}
    )
    return data


class Sources:
    """Watched objects, shared by the pods that use them; ``changed(key)`` on every change."""

    def __init__(self, api: Api, changed: Callable[[Key], None]) -> None:
        self.api = api
        self.changed = changed
        self._watches: dict[Key, Watch] = {}
        self._users: dict[Key, set[str]] = {}

    async def use(self, keys: set[Key], user: str) -> None:
        """Start watching what ``user`` (a pod uid) needs; returns once each is known."""
        for key in keys:
            self._users.setdefault(key, set()).add(user)
            if key not in self._watches:
                kind, namespace, name = key
                plural = "secrets" if kind == "secret" else "configmaps"
                watch = Watch(
                    self.api,
                    f"/api/v1/namespaces/{namespace}/{plural}",
                    self._handler(key),
                    fieldSelector=f"metadata.name={name}",
                )
                self._watches[key] = watch
                watch.start()
        for key in keys:
            await self._watches[key].synced.wait()

    def _handler(self, key: Key) -> Callable[[str, Obj], None]:
        def handle(_kind: str, _obj: Obj) -> None:
            self.changed(key)

        return handle

    async def release(self, user: str) -> None:
        """``user`` is gone: stop watching what no one else uses."""
        for key in [k for k, users in self._users.items() if user in users]:
            self._users[key].discard(user)
            if not self._users[key]:
                del self._users[key]
                await self._watches.pop(key).stop()

    def data(self, key: Key) -> dict[str, bytes] | None:
        watch = self._watches.get(key)
        if watch is None:
            return None
        obj = watch.known.get((key[1], key[2]))
        return None if obj is None else decoded(key[0], obj)

    async def stop(self) -> None:
        for watch in self._watches.values():
            await watch.stop()
        self._watches.clear()
        self._users.clear()
