"""``ovq devices``: the OpenVINO version, every device, its capabilities and what they mean."""

from __future__ import annotations

import argparse
import json

from ovq.cli._common import add_command


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "devices", "list OpenVINO devices, their capabilities and default precision")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ovq.runtime.capabilities import KEY_CAPABILITIES, query_devices
    from ovq.runtime.compilation import default_cache_dir

    report = query_devices(cache_dir=default_cache_dir())
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    print(f"OpenVINO {report.openvino_version}")
    state = "writable" if report.cache_writable else "NOT writable: compiled models will not be cached"
    print(f"compiled-model cache: {report.cache_dir} ({state}; set OVQ_CACHE_DIR to move it)")
    for dev in report.devices:
        kind = ", ".join(x for x in (dev.device_type, dev.architecture) if x)
        print()
        print(f"{dev.name}: {dev.full_name}" + (f" [{kind}]" if kind else ""))
        key = [c for c in KEY_CAPABILITIES if dev.has(c)]
        other = [c for c in dev.capabilities if c not in KEY_CAPABILITIES]
        print(f"  precisions:  {' '.join(key) or 'none reported'}" + (f"  (also {' '.join(other)})" if other else ""))
        if dev.default_precision:
            print(f"  default inference precision for FP models: {dev.default_precision}")
        for note in dev.notes:
            print(f"  - {note}")
    if not report.devices:
        print("no devices found")
    return 0
