"""``ovq families``: every decoder family ovq knows, built in or from an installed plug-in package."""

from __future__ import annotations

import argparse

from ovq.cli._common import add_command


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "families", "list the decoder families (built-in and plug-ins) and where each comes from")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ovq.model.decoders import GROUP, families

    found = families()
    if args.json:
        import json

        print(json.dumps([
            {"family": f.name, "origin": f.origin, "distribution": f.distribution, "version": f.version,
             "target": f.target, "expects": f.decoder.expects if f.decoder else None, "error": f.error}
            for f in found
        ], indent=2))
        return 0
    width = max(len(f.name) for f in found)
    for f in found:
        print(f"{f.name:<{width}}  {f.where}")
        print(f"{'':<{width}}    {f.decoder.expects if f.decoder else 'NOT USABLE: ' + (f.error or '')}")
    plugins = sum(f.origin == "plug-in" for f in found)
    print(f"{len(found) - plugins} built-in, {plugins} from plug-ins (entry point group '{GROUP}')")
    return 0
