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
    # its keyword options are the fields of the one options type
    params = inspect.signature(ovq.quantize).parameters
    assert params["fields"].kind is inspect.Parameter.VAR_KEYWORD and "options" in params
    assert {"max_drop", "calib_split", "val_split", "rank_by", "precision"} <= set(ovq.QuantizeOptions.__dataclass_fields__)


def test_no_function_shadows_a_module():
    """``ovq.quantize`` is the function and there is no module ``ovq.quantize`` it could hide (stage folders have
    noun names: quantization/, evaluation/...)."""
    from pathlib import Path

    package = Path(ovq.__file__).parent
    for name in ovq.__all__:
        if callable(getattr(ovq, name)) and not isinstance(getattr(ovq, name), type):
            assert not (package / f"{name}.py").exists() and not (package / name).is_dir(), f"ovq.{name} is a module too"
