"""``ovq bundle [MODEL] --pipeline FILE.yaml -o OUT_DIR``: a self-contained deploy folder for an industrial PC."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from ovq.cli._common import add_command
    from ovq.deployment.unit import DEFAULT_ALLOW_IP

    p = add_command(sub, "bundle", "build a deploy folder: IR, pipeline, run script, systemd unit, pinned requirements")
    p.add_argument("model", nargs="?",
                   help="model folder, .xml, .onnx or .pt (converted to IR in the bundle); default: the pipeline's")
    p.add_argument("--pipeline", required=True, help="pipeline YAML file to ship (paths are rewritten)")
    p.add_argument("-o", "--out", required=True, help="bundle folder to write")
    p.add_argument("--install-dir", help="the folder of its own the bundle will live in on the target, replaced whole by "
                   "each install (default /opt/ovq/<OUT name>)")
    p.add_argument("--user", default="ovq", help="unprivileged user the service runs as (default ovq)")
    p.add_argument("--wheel", help="ship this ovq wheel instead of building one from the source tree")
    p.add_argument("--offline", action="store_true",
                   help="also download every pinned dependency into wheels/ so the target needs no network")
    p.add_argument("--no-quantize", dest="quantize", action="store_false",
                   help="with a quantize section: fail unless its output is already made and up to date")
    p.add_argument("--allow-ip", action="append", metavar="ADDR",
                   help="an address or CIDR the service may reach (repeat; 'any' for all); default: "
                        + " ".join(DEFAULT_ALLOW_IP) + " (only pipelines with stream URLs or MQTT reach the network)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ovq.cli._common import refuse_empty_folder
    from ovq.deployment.bundle import build_bundle
    from ovq.deployment.unit import DEFAULT_ALLOW_IP

    refuse_empty_folder("-o", args.out, "the bundle folder (a new or an empty one)")
    result = build_bundle(
        args.model, args.pipeline, args.out, install_dir=args.install_dir, user=args.user, wheel=args.wheel,
        offline=args.offline, overwrite=args.force, quantize=args.quantize,
        allow_ip=tuple(args.allow_ip) if args.allow_ip else DEFAULT_ALLOW_IP,
    )
    for line in result.lines():
        print(line)
    return 0
