"""``ovq health FILE``: whether a running pipeline still produces results (its heartbeat file is fresh).

For supervisors other than systemd (Docker ``HEALTHCHECK``, a monitoring script): run the pipeline with
``OVQ_HEARTBEAT_FILE=FILE`` set; exit code 0 while the last result is at most ``--max-age`` seconds old, 1 when
it is older or the file cannot be trusted (not what a pipeline writes, dated in the future), 2 when there is no
heartbeat file.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from ovq.cli._common import add_command

    p = add_command(sub, "health", "exit 0 while a pipeline's heartbeat file (OVQ_HEARTBEAT_FILE) is fresh, 1 when it is stale or "
                    "not a heartbeat, 2 when there is none")
    p.add_argument("file", help="the heartbeat file the pipeline writes (its OVQ_HEARTBEAT_FILE)")
    p.add_argument("--max-age", type=float, default=30.0, metavar="S",
                   help="seconds since the last result that still count as alive (default 30)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import math

    from ovq.core.errors import ConfigError
    from ovq.deployment.notify import read_heartbeat

    if not (args.max_age > 0 and math.isfinite(args.max_age)):
        raise ConfigError(f"--max-age must be a finite number > 0, got {args.max_age:g}")
    beat = read_heartbeat(args.file)
    if beat.problem is not None:
        print(f"not alive: {args.file}: {beat.problem}")
        return 1
    state = "alive" if beat.age <= args.max_age else "stale"
    print(f"{state}: last result {beat.age:.1f} s ago ({beat.results} results so far; limit {args.max_age:g} s)")
    return 0 if state == "alive" else 1
