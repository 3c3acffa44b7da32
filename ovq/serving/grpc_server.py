"""kserve's gRPC inference service for ``ovq serve``, bound to one address (kserve's own ``GRPCServer`` binds
``[::]``), with errors mapped to status codes (:class:`~ovq.serving.server_errors.StatusInterceptor`) and without
``SO_REUSEPORT`` (see :mod:`ovq.serving.listen`)."""

from __future__ import annotations

from concurrent import futures
from typing import Any

from grpc import aio
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
from kserve.protocol.grpc.servicer import InferenceServicer

from ovq.serving.listen import GRPC_NO_REUSEPORT, Listeners, grpc_bind_failed
from ovq.serving.server_errors import StatusInterceptor

MESSAGE_LIMIT = 64 * 1024 * 1024  # a 1280x1280 u8 input is 4.9 MB, beyond gRPC's 4 MB default


class GrpcServer:
    """Bind with :meth:`bind` (in the event loop, before anything starts), then serve with :meth:`start`."""

    def __init__(self, listeners: Listeners, model_server: Any) -> None:
        self.listeners, self.model_server = listeners, model_server
        self._server: Any = None

    def bind(self) -> None:
        """Create the server and bind its port; a port taken since :func:`bind_listeners` checked it is a
        :class:`~ovq.serving.listen.ListenError` (grpc itself says only "Failed to bind")."""
        server = self.model_server
        servicer = InferenceServicer(server.dataplane, server.model_repository_extension)
        self._server = aio.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=(StatusInterceptor(),),
                                  options=[("grpc.max_send_message_length", MESSAGE_LIMIT),
                                           ("grpc.max_receive_message_length", MESSAGE_LIMIT), GRPC_NO_REUSEPORT])
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
        try:
            bound = self._server.add_insecure_port(self.listeners.grpc_target)
        except RuntimeError:
            bound = 0
        if not bound:
            raise grpc_bind_failed(self.listeners)

    async def start(self) -> None:
        await self._server.start()
        await self._server.wait_for_termination()

    async def stop(self, sig: int | None = None) -> None:
        if self._server is not None:
            await self._server.stop(grace=2)
