"""The public Python API: everything README and scripts use is importable from ``ovq``."""

import inspect

import ovq


def test_every_public_name_resolves():
    missing = [name for name in ovq.__all__ if not hasattr(ovq, name)]
    assert missing == []


def test_readme_entry_points_are_the_functions():
    # `ovq.quantize` once resolved to nothing: the README's script example must call the real API
    for name in ("convert", "quantize", "evaluate", "benchmark", "predict"):
        assert inspect.isfunction(getattr(ovq, name)), name
    params = inspect.signature(ovq.quantize).parameters
    assert {"max_drop", "calib_split", "val_split", "rank_by", "precision"} <= set(params)
