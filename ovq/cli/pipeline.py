"""``ovq pipeline FILE.yaml``: run a declarative pipeline (model, quantization, sources, device, sinks)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from ovq.cli._common import add_command, refuse_local_options, report_to

if TYPE_CHECKING:
    from ovq.deployment.schema import PipelineConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "pipeline", "run a pipeline described in a YAML file (see pipelines/ for examples)")
    p.add_argument("file", help="pipeline YAML file")
    p.add_argument("--check", action="store_true",
                   help="validate the file, the paths it reads and the device, print the resolved config; compile nothing")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop each stream after N frames (overrides the file)")
    p.add_argument("--device", help="override the file's device (CPU, GPU, GPU.1, NPU, AUTO, AUTO:GPU,CPU...)")
    p.add_argument("--json", action="store_true", help="print the run summary (or the --check config) as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ovq.cli.run import print_live_view
    from ovq.core.errors import ConfigError
    from ovq.deployment.build import build_pipeline
    from ovq.deployment.loader import load_pipeline_config
    from ovq.deployment.notify import LivenessSink
    from ovq.deployment.signals import exit_now, stop_on_signals

    if args.max_frames is not None and args.max_frames < 1:
        raise ConfigError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.device is not None and not args.device.strip():  # --device "$DEV" with DEV unset ran on the file's
        raise ConfigError(f"--device {args.device!r}: an empty device name; give one (CPU, GPU, NPU, AUTO...) or leave "
                          "--device out for the file's")
    cfg = load_pipeline_config(args.file)
    refuse_local_options(cfg.model, {"--device": args.device})
    if args.check:
        return _check(cfg, args)
    # a service's liveness ($NOTIFY_SOCKET, $OVQ_HEARTBEAT_FILE): ovq.deployment.notify
    liveness = [sink for sink in (LivenessSink.from_environment(),) if sink is not None]
    pipeline = build_pipeline(cfg, max_frames=args.max_frames, device=args.device, extra_sinks=liveness)
    # the report is inside too: a second Ctrl-C that lands after the drain still ends the command with 130
    out = report_to(getattr(sink, "path", None) for sink in pipeline.sinks)
    print_live_view(pipeline.sinks, sys.stderr if args.json else out)  # --json: standard output is the summary's
    with stop_on_signals(pipeline.stop, name="ovq pipeline", at_once=exit_now("ovq pipeline")):
        summary = pipeline.run()
        if args.json:
            print(json.dumps(summary.to_dict(), indent=2), file=out)
        else:
            for line in summary.lines():
                print(line, file=out)
    return 0


def _check(cfg: PipelineConfig, args: argparse.Namespace) -> int:
    import yaml

    from ovq.deployment.build import check_decoder, check_environment, check_outputs, check_paths
    from ovq.runtime.compilation import check_device

    check_paths(cfg)
    check_decoder(cfg)
    check_environment(cfg)
    check_outputs(cfg)
    spec = check_device(args.device or cfg.device)
    resolved = cfg.to_dict()
    resolved["device"] = spec.text
    if args.max_frames is not None:
        resolved["max_frames"] = args.max_frames
    if args.json:
        print(json.dumps(resolved, indent=2))
    else:
        print(f"# {args.file}: OK (device {spec.text} is available; passwords masked)")
        print(yaml.safe_dump(resolved, sort_keys=False, default_flow_style=False, allow_unicode=True).rstrip())
    return 0
