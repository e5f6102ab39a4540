"""REST handlers for flavor kernels: authenticate, authorize, parse, then call the service."""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from jupyter_server.utils import url_path_join
from tornado import web

from ..handlers import API, MLInfraHandler
from .service import KernelService


class KernelHandlerBase(MLInfraHandler):
    @property
    def kernels(self) -> KernelService:
        service: KernelService = self.settings["mlinfra.kernels"]
        return service


class KernelsHandler(KernelHandlerBase):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.reply(self.kernels.list(self.identity))

    @web.authenticated
    @authorized
    async def post(self) -> None:
        """Answer 202 at once: the start runs on; its kernel's URL is where it is followed."""
        model = await self.kernels.start(self.identity, self.json_body())
        self.set_status(202)
        self.set_header("Location", url_path_join(self.request.path, model["id"]))
        self.reply(model)


class KernelHandler(KernelHandlerBase):
    @web.authenticated
    @authorized
    async def get(self, kernel_id: str) -> None:
        self.reply(self.kernels.get(self.identity, kernel_id))

    @web.authenticated
    @authorized
    async def patch(self, kernel_id: str) -> None:
        """Switch flavor: ``{"flavor": name}`` restarts the kernel on that flavor."""
        self.reply(await self.kernels.switch(self.identity, kernel_id, self.json_body()))

    @web.authenticated
    @authorized
    async def delete(self, kernel_id: str) -> None:
        self.reply(await self.kernels.stop(self.identity, kernel_id))


KERNEL_ID = r"(?P<kernel_id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"

kernel_handlers = [
    (rf"{API}/kernels", KernelsHandler),
    (rf"{API}/kernels/{KERNEL_ID}", KernelHandler),
]
