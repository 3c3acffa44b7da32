"""``ovq serve``: a KServe v2 server (the ``kserve`` library) hosting ovq models on OpenVINO.

For machines where OpenVINO Model Server is not installed. Each model is compiled once with the precision
stored in it (as ``ovq quantize`` validated it) and runs on an ``AsyncInferQueue``: requests from all
clients share its ``nireq`` infer requests, and the event loop never waits on a device. Endpoints are the v2
protocol's, REST (with the binary tensor extension) and gRPC:
``GET /v2/health/ready``, ``GET /v2/models/NAME/ready``, ``GET /v2/models/NAME``, ``POST /v2/models/NAME/infer``.
A request whose single input is a BYTES tensor named ``ovq_info`` answers with the model's ovq metadata
(labels, family, input size, resize mode, thresholds) as JSON, so a client needs only the model's URL; the
protocol's metadata response has no field for it. Beside it, under ``served``, how this server runs the model
(device, performance hint, inference precision, infer requests), which ``ovq bench URL`` reports.

The servers bind ``host`` (127.0.0.1 unless told otherwise): kserve's own ``ModelServer.start`` binds every
interface, so the REST and gRPC servers are assembled here from kserve's parts: the model
(:mod:`~ovq.serving.served_model`), the REST gate in front of kserve (:mod:`~ovq.serving.rest_gate`: size
limits, binary requests), the gRPC server (:mod:`~ovq.serving.grpc_server`), the error statuses of both
(:mod:`~ovq.serving.server_errors`) and the listening sockets, bound before anything starts
(:mod:`~ovq.serving.listen`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ovq.core.errors import ConfigError, DependencyError
from ovq.core.urls import is_loopback
from ovq.model.detector import Detector
from ovq.model.paths import refuse_urls
from ovq.serving.listen import Listeners, bind_listeners, bracketed
from ovq.serving.repository import check_model_name, model_stem

logger = logging.getLogger(__name__)


def _kserve() -> Any:
    try:
        import kserve
    except ImportError as exc:
        raise DependencyError(f"ovq serve needs the kserve package ({exc.name} is missing): pip install 'ovq[serve]'")
    return kserve


@dataclass(frozen=True)
class ServeOptions:
    """How ``ovq serve`` runs: where it listens and how each model is compiled."""

    host: str = "127.0.0.1"
    http_port: int = 8080
    grpc_port: int = 8081
    device: str = "CPU"
    nireq: int = 0  # infer requests per model (0: the device's optimal number)
    hint: str = "throughput"

    def __post_init__(self) -> None:
        for what, port in (("http port", self.http_port), ("grpc port", self.grpc_port)):
            if not 0 < int(port) < 65536:
                raise ConfigError(f"{what} {port}: expected 1..65535")
        if self.http_port == self.grpc_port:
            raise ConfigError(f"the http and grpc ports are both {self.http_port}; give two different ports")
        if self.nireq < 0:
            raise ConfigError(f"nireq {self.nireq}: expected 0 (the device's optimum) or more")


def served_names(models: Sequence[str | Path], names: Sequence[str] | None) -> list[str]:
    """The URL name of each model: ``names`` in order, else the model file's stem; each checked as
    ``export-serving`` checks it (a name with ``/`` served a model no URL could reach, ``""`` was a traceback)."""
    refuse_urls(models, "ovq serve hosts model files; give a model folder, .xml or .onnx (a served model is used by "
                        "its URL: ovq run, eval, predict, bench)")
    names = list(names or [])
    if len(names) > len(models):
        raise ConfigError(f"{len(names)} names for {len(models)} models")
    chosen = [names[i] if i < len(names) else model_stem(m) for i, m in enumerate(models)]
    for name in chosen:
        check_model_name(name)
    if len(set(chosen)) != len(chosen):
        raise ConfigError(f"model names must be unique, got {chosen}; give each one with --name")
    return chosen


def served_models(models: Sequence[str | Path], names: Sequence[str] | None, options: ServeOptions) -> list[Any]:
    """One kserve model per path, compiled and ready; names as :func:`served_names` gives them."""
    chosen = served_names(models, names)
    _kserve()
    from ovq.serving.served_model import ServedModel

    return [ServedModel(name, Detector(m, device=options.device, hint=options.hint), options.nireq)
            for name, m in zip(chosen, models, strict=True)]


SignalHandler = Callable[[int, Any], None]


def warn_if_open(host: str) -> bool:
    """Log a warning (and return True) when ``host`` makes the server reachable beyond this machine: the v2 protocol
    has no authentication (the live view warns alike about a bind without its token)."""
    if is_loopback(host):
        return False
    logger.warning("serving on %s: any machine that reaches it can run inference (the KServe v2 protocol has no "
                   "authentication); keep it behind a firewall or an authenticating proxy", host)
    return True


def serve(models: Sequence[Any], options: ServeOptions, listeners: Listeners | None = None, *,
          ready: Callable[[], None] | None = None,
          on_signal: Callable[[SignalHandler], SignalHandler] | None = None) -> None:
    """Serve ``models`` (from :func:`served_models`) until SIGINT/SIGTERM on ``listeners`` (from
    :func:`~ovq.serving.listen.bind_listeners`, bound here when not given: before compiling is better).
    ``ready`` is called once both ports are bound by their servers, before kserve is set up. ``on_signal`` wraps
    the REST server's handler of SIGINT/SIGTERM (which stops it gently, answering the requests under way); the
    command's wrapper ends the process on a second signal."""
    _kserve()
    warn_if_open(options.host)
    own = listeners is None
    listeners = listeners or bind_listeners(options.host, options.http_port, options.grpc_port)
    try:
        _serve(models, options, listeners, ready, on_signal)
    finally:
        if own:
            listeners.close()


def _serve(models: Sequence[Any], options: ServeOptions, listeners: Listeners, ready: Callable[[], None] | None,
           on_signal: Callable[[SignalHandler], SignalHandler] | None) -> None:
    from kserve.model_server import FASTAPI_APP_IMPORT_STRING, ModelServer, app
    from kserve.protocol.rest.server import RESTServer

    from ovq.serving.grpc_server import GrpcServer
    from ovq.serving.rest_gate import RestGate
    from ovq.serving.served_model import FixedModels
    from ovq.serving.server_errors import install_rest_handlers

    grpc = GrpcServer(listeners)
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        # grpc binds first, on the loop that serves it: a port lost in the moment ovq lets go of it (see
        # GrpcServer.bind) is one line, before anything is announced and before kserve logs a word
        runner.run(grpc.bind())
        try:
            if ready is not None:
                ready()
            # kserve configures logging here unless its logger has a handler: the caller's (ovq's CLI gives it one)
            server = ModelServer(http_port=options.http_port, grpc_port=options.grpc_port, enable_grpc=False,
                                 enable_latency_logging=False)
            server._register_and_check_atleast_one_model_is_ready(list(models))
            # REST and gRPC alike: no client loads or unloads a model (see FixedModels)
            server.model_repository_extension = FixedModels(server.registered_models)
            rest = RESTServer(FASTAPI_APP_IMPORT_STRING, server.dataplane, server.model_repository_extension,
                              options.http_port, workers=1, grace_period=5)
            rest.config.host = listeners.address
            rest.create_application()  # kserve's routes and handlers on its app object, this process's own
            install_rest_handlers(app)
            app.add_middleware(RestGate, models={m.name: m for m in models})
            grpc.attach(server)
            if on_signal is not None:  # uvicorn installs it while it serves; its own second SIGINT forced an exit
                # that left the application's lifespan to be cancelled, logged as a traceback
                rest._server.handle_exit = on_signal(rest._server.handle_exit)
            server._rest_server = rest
            server._grpc_server = grpc
            server.setup_event_loop()
            server.register_signal_handler()
        except BaseException:
            runner.run(grpc.stop())  # its port free again, also in a process that goes on
            raise

        async def both() -> None:
            logger.info("v2 REST on http://%s:%d, gRPC on %s; models: %s", bracketed(listeners.address),
                        options.http_port, listeners.grpc_target, ", ".join(m.name for m in models))
            await asyncio.gather(rest._server.serve(sockets=[listeners.http]), grpc.start())

        listeners.stop_answering()  # uvicorn accepts from here: connections meanwhile wait in the backlog
        runner.run(both())
