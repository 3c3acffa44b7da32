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


def test_the_facade_lists_each_name_once_with_its_module():
    """``ovq`` imports a name from its module on first use; ``__all__`` and the export table agree."""
    assert sorted(ovq.__all__) == sorted([*ovq._EXPORTS, "__version__"])
    assert len(set(ovq.__all__)) == len(ovq.__all__)
    for name, (module, attr) in ovq._EXPORTS.items():
        assert getattr(ovq, name) is getattr(__import__(module, fromlist=[attr]), attr), name


def test_import_ovq_loads_neither_openvino_nor_opencv():
    """So a command starts fast and a Ctrl-C in its first moments is its own to handle (one line, exit 130)."""
    import subprocess
    import sys

    code = "import sys, ovq; print(sorted(m for m in ('openvino', 'cv2', 'nncf', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_what_capacity_raises_on_ctrl_c_is_exported():
    """capacity() raises CapacityInterrupted with the trials done; a caller catching it had to import it from
    ovq.streaming.capacity."""
    assert issubclass(ovq.CapacityInterrupted, KeyboardInterrupt) and "CapacityInterrupted" in ovq.__all__
