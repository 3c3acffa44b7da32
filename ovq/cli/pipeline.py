"""``ovq pipeline FILE.yaml``: run a declarative pipeline (model, quantization, sources, device, sinks)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    from ovq.cli._common import add_command

    p = add_command(sub, "pipeline", "run a pipeline described in a YAML file (see pipelines/ for examples)")
    p.add_argument("file", help="pipeline YAML file")
    p.add_argument("--check", action="store_true",
                   help="validate the file, the paths it reads and the device, print the resolved config; compile nothing")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop each stream after N frames (overrides the file)")
    p.add_argument("--device", help="override the file's device (CPU, GPU, GPU.1, NPU, AUTO, AUTO:GPU,CPU...)")
    p.add_argument("--json", action="store_true", help="print the run summary (or the --check config) as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import yaml

    from ovq.deployment.build import build_pipeline, check_environment, check_paths
    from ovq.deployment.loader import load_pipeline_config
    from ovq.core.errors import ConfigError
    from ovq.runtime.compilation import check_device

    if args.max_frames is not None and args.max_frames < 1:
        raise ConfigError(f"--max-frames must be >= 1, got {args.max_frames}")
    cfg = load_pipeline_config(args.file)
    if args.check:
        check_paths(cfg)
        check_environment(cfg)
        spec = check_device(args.device or cfg.device)
        resolved = cfg.to_dict()
        resolved["device"] = spec.text
        if args.max_frames is not None:
            resolved["max_frames"] = args.max_frames
        if args.json:
            print(json.dumps(resolved, indent=2))
        else:
            print(f"# {args.file}: OK (device {spec.text} is available; passwords masked)")
            print(yaml.safe_dump(resolved, sort_keys=False, default_flow_style=False).rstrip())
        return 0
    pipeline = build_pipeline(cfg, max_frames=args.max_frames, device=args.device)
    previous = _stop_on_signals(pipeline)
    try:
        summary = pipeline.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if args.json:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        for line in summary.lines():
            print(line)
    return 0


def _stop_on_signals(pipeline: Any) -> dict[int, Any]:
    """SIGTERM (systemd stop) and SIGINT make the pipeline drain, close its sinks and return."""

    def handler(signum: int, frame: Any) -> None:
        print(f"ovq pipeline: {signal.Signals(signum).name}, stopping", file=sys.stderr)
        pipeline.stop()

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, handler)
    return previous
