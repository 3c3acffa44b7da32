"""kserve's gRPC inference service for ``ovq serve``, bound to one address (kserve's own ``GRPCServer`` binds
``[::]``), with errors mapped to status codes (:class:`~ovq.serving.server_errors.StatusInterceptor`) and without
``SO_REUSEPORT`` (see :mod:`ovq.serving.listen`)."""

from __future__ import annotations

import logging
import sys
from concurrent import futures
from typing import Any

from grpc import aio
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.servicer import InferenceServicer

from ovq.core.native import native_stderr
from ovq.serving.listen import GRPC_NO_REUSEPORT, Listeners, grpc_bind_failed
from ovq.serving.server_errors import StatusInterceptor

logger = logging.getLogger(__name__)

MESSAGE_LIMIT = 64 * 1024 * 1024  # a 1280x1280 u8 input is 4.9 MB, beyond gRPC's 4 MB default


class GrpcServer:
    """Bind with :meth:`bind` (on the event loop that will serve it, before the REST server and kserve are set up),
    give it kserve's model server with :meth:`attach`, then serve with :meth:`start`."""

    def __init__(self, listeners: Listeners) -> None:
        self.listeners = listeners
        self._server: Any = None
        self._started = False

    async def bind(self) -> None:
        """Create the server and have grpc bind the port that :func:`~ovq.serving.listen.bind_listeners` holds.

        grpc cannot take over a socket, so ovq lets go of the port and grpc binds it at once: no await and no other
        work in between, the port is free for the time of one system call. That moment cannot be closed (sharing the
        port with ``SO_REUSEPORT`` on both sockets would let any other gRPC server share it afterwards); another
        program that takes the port exactly then gets the same one line as a port taken before serve started, from
        :func:`~ovq.serving.listen.grpc_bind_failed`, grpc's own log line about it kept off the terminal.
        """
        self._server = aio.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=(StatusInterceptor(),),
                                  options=[("grpc.max_send_message_length", MESSAGE_LIMIT),
                                           ("grpc.max_receive_message_length", MESSAGE_LIMIT), GRPC_NO_REUSEPORT])
        self.listeners.release_grpc()
        with native_stderr() as said:
            try:
                bound = self._server.add_insecure_port(self.listeners.grpc_target)
            except RuntimeError:  # grpc.aio raises "Failed to bind to address ..." where grpc's server returns 0
                bound = 0
        if not bound:
            logger.debug("grpc: %s", said[0].strip())
            raise grpc_bind_failed(self.listeners)
        sys.stderr.write(said[0])  # nothing grpc said is lost when it bound

    def attach(self, model_server: Any) -> None:
        """Serve kserve's v2 gRPC service of ``model_server`` (its models, its dataplane)."""
        servicer = Servicer(model_server.dataplane, model_server.model_repository_extension)
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)

    async def start(self) -> None:
        self._started = True
        await self._server.start()
        await self._server.wait_for_termination()

    async def stop(self, sig: int | None = None) -> None:
        if self._server is None:
            return
        if not self._started:  # grpc keeps a server's port until the process ends unless it started (grpcio 1.85)
            self._started = True
            await self._server.start()
        await self._server.stop(grace=2)


class Servicer(InferenceServicer):
    """kserve's v2 gRPC service, refusing a model version as kserve's REST routes do (501 there, UNIMPLEMENTED here):
    kserve's servicer ignores the version, so a request for version 7 of a model served without versions was
    answered as if it had named none (``ovq predict grpc://.../versions/7`` wrote predictions)."""

    async def ModelReady(self, request: Any, context: Any) -> Any:
        _no_version(request.version)
        return await super().ModelReady(request, context)

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        _no_version(request.version)
        return await super().ModelMetadata(request, context)

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        _no_version(request.model_version)
        return await super().ModelInfer(request, context)


def _no_version(version: str) -> None:
    if version:
        raise NotImplementedError("Model versioning not supported yet.")  # kserve's REST words, for one message
