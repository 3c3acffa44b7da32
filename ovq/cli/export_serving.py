"""``ovq export-serving``: placeholder replaced below."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    pass
