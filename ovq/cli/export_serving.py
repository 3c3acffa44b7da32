"""``ovq export-serving MODEL... -o REPO --format ovms|triton|kserve``: a model repository for a model server."""

from __future__ import annotations

import argparse

from ovq.cli._common import add_command, add_device, refuse_empty_folder


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "export-serving",
                    "write models into a repository for OpenVINO Model Server or Triton, or a KServe manifest")
    p.add_argument("models", nargs="+", metavar="MODEL", help="model folders, .xml, .onnx or .pt")
    p.add_argument("-o", "--output", required=True, metavar="REPO", help="repository folder (created or added to)")
    p.add_argument("--format", choices=("ovms", "triton", "kserve"), default="ovms",
                   help="ovms: config.json + NAME/VERSION/model.xml; triton: NAME/config.pbtxt + NAME/VERSION/; "
                        "kserve: the OVMS layout + NAME.inferenceservice.yaml (default ovms)")
    p.add_argument("--name", action="append", default=[], help="model name, once per MODEL in order (default: its stem)")
    add_device(p)
    p.add_argument("--hint", choices=("throughput", "latency", "cumulative_throughput"), default="throughput",
                   help="PERFORMANCE_HINT the server compiles with (default throughput)")
    p.add_argument("--nireq", type=int, default=0, help="infer requests per model, for ovms and kserve (default: the server's choice)")
    p.add_argument("--storage-uri", default="", metavar="URI",
                   help="kserve: where the cluster reads REPO from, e.g. s3://bucket/models (default pvc://ovq-models)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ovq.serving.repository import ExportOptions, export_serving

    refuse_empty_folder("-o", args.output, "the repository folder (-o . for this one)")
    options = ExportOptions(format=args.format, device=args.device, hint=args.hint.upper(), nireq=args.nireq,
                            storage_uri=args.storage_uri)
    for e in export_serving(args.models, args.output, names=args.name, options=options):
        print(f"{e.name}: version {e.version} in {e.path}" + "".join(f"; wrote {f}" for f in e.files))
    return 0
