"""``ovq serve``: host ovq models on a KServe v2 server (REST and gRPC) for machines without OpenVINO Model Server."""

from __future__ import annotations

import argparse
import warnings

from ovq.cli._common import add_command, add_device, flags_named


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "serve", "serve models over the KServe v2 protocol (REST + gRPC) on the kserve library")
    p.add_argument("models", nargs="+", metavar="MODEL", help="model folders, .xml or .onnx (converted on load)")
    p.add_argument("--name", action="append", default=[],
                   help="model name in URLs, once per MODEL in order (default: the file's stem)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0: all)")
    p.add_argument("--http-port", type=int, default=8080, metavar="P", help="REST port (default 8080)")
    p.add_argument("--grpc-port", type=int, default=8081, metavar="Q", help="gRPC port (default 8081)")
    add_device(p)
    p.add_argument("--nireq", type=int, default=0, help="infer requests per model (default: the device's optimum)")
    p.add_argument("--hint", choices=("throughput", "latency"), default="throughput",
                   help="OpenVINO performance hint (default throughput: many clients share each model)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ovq.core.errors import ConfigError
    from ovq.deployment.signals import exit_now, first_then_at_once
    from ovq.serving.listen import bind_listeners, bracketed
    from ovq.serving.server import ServeOptions, serve, served_models, served_names

    # kserve 0.21 answers through FastAPI's ORJSONResponse, which FastAPI deprecates: a two-line warning on the
    # first request, at any verbosity, about code neither the user nor ovq controls. This process is the command's.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    if args.http_port == args.grpc_port:
        raise ConfigError(f"--http-port and --grpc-port are both {args.http_port}; give two different ports")
    with flags_named({"http port": "--http-port", "grpc port": "--grpc-port", "nireq": "--nireq"}):
        options = ServeOptions(host=args.host, http_port=args.http_port, grpc_port=args.grpc_port, device=args.device,
                               nireq=args.nireq, hint=args.hint)
    names = served_names(args.models, args.name)
    # both ports before the models compile, listening and answering 'not ready' (the REST one until kserve's server
    # takes it over, the gRPC one until grpc binds it): a port in use is one line and exit 2, nothing started
    listeners = bind_listeners(options.host, options.http_port, options.grpc_port)
    try:
        models = served_models(args.models, names, options)
        host = bracketed(args.host)

        def announce() -> None:  # once grpc has bound its port too: a server that will not run is never announced
            for m in models:
                print(f"serving http://{host}:{args.http_port}/v2/models/{m.name}  grpc://{host}:{args.grpc_port}"
                      f"/v2/models/{m.name}", flush=True)

        # the first SIGINT/SIGTERM stops the servers gently (requests under way are answered, up to 5 s), the next
        # one at once, as `ovq run` does
        at_once = exit_now("ovq serve", "requests under way are not answered")
        serve(models, options, listeners, ready=announce, on_signal=lambda gently: first_then_at_once(gently, at_once))
    finally:
        listeners.close()
    return 0
