"""Where ovq reaches into NNCF, as a checked contract.

NNCF 3.4's accuracy control has no option for three things ovq needs:

- **precision**: its OpenVINO backend compiles every model it validates with ``INFERENCE_PRECISION_HINT=f32``
  (``OVPreparedModel(model, use_fp32_precision=True)``). ovq validates at the precision the model will run at
  (bf16 on AMX CPUs), so it sets ``use_fp32_precision`` for the call.
- **ranking**: ``Ranker.rank_groups_of_quantizers(groups_to_rank, quantized_model, ...)`` orders the candidate
  reverts. ovq routes it through its planner, which prices every candidate in latency and may reorder them.
- **one quantization**: accuracy control starts by quantizing the model (``quantize_impl``, weights left
  uncompressed) with the same settings ovq has just used for the plain INT8 model its collapse guard and overflow
  fix judged. ovq hands NNCF a copy of that model instead of a second, identical quantization (FastestDet with
  full bias correction on Zen 3: 46 s saved of a 290 s run).

The hooks bind NNCF's arguments by *name* (``inspect.signature``), so a release that reorders or adds
parameters still works and one that renames them fails :func:`check_contract` with a message saying what
changed (a fast test runs it against the installed NNCF). They replace class attributes, which is process-wide,
so they are installed only for one call, restored on every path, and a second call in the same process while
one runs is refused (:class:`ConcurrentQuantizeError`) instead of silently sharing them.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ovq.core.errors import DependencyError, OvqError


@dataclass(frozen=True)
class Hook:
    """One NNCF method ovq wraps, and the parameters it relies on by name."""

    module: str
    owner: str
    method: str
    parameters: tuple[str, ...]

    def resolve(self) -> tuple[Any, Callable[..., Any], inspect.Signature]:
        """The class (or, for a module-level function, the module) holding the method, the method, its signature."""
        try:
            module = importlib.import_module(self.module)
            owner = getattr(module, self.owner) if self.owner else module
            original = getattr(owner, self.method)
        except (ImportError, AttributeError) as exc:
            raise DependencyError(f"{_nncf_version()}: {self.where} is gone ({exc}); {_SUPPORTED}") from None
        return owner, original, inspect.signature(original)

    @property
    def where(self) -> str:
        return ".".join(part for part in (self.module, self.owner, self.method) if part)


PRECISION = Hook("nncf.quantization.algorithms.accuracy_control.openvino_backend", "OVPreparedModel", "__init__",
                 ("model", "use_fp32_precision"))
RANKING = Hook("nncf.quantization.algorithms.accuracy_control.ranker", "Ranker", "rank_groups_of_quantizers",
               ("groups_to_rank", "quantized_model"))
QUANTIZE = Hook("nncf.openvino.quantization.quantize_model", "", "quantize_impl",
                ("model", "ignored_scope", "advanced_parameters"))
HOOKS = (PRECISION, RANKING, QUANTIZE)
_SUPPORTED = "ovq's accuracy control supports NNCF 3.4 (pip install 'nncf>=3.4,<3.5')"
_ACTIVE = threading.Lock()


class ConcurrentQuantizeError(OvqError):
    """Another accuracy-controlled quantization is running in this process."""


def _nncf_version() -> str:
    try:
        import nncf

        return f"NNCF {nncf.__version__}"
    except ImportError:
        return "NNCF (not installed)"


def check_contract() -> None:
    """Raise :class:`DependencyError` when the installed NNCF lacks a method or parameter ovq's hooks use."""
    for hook in HOOKS:
        _, _, signature = hook.resolve()
        missing = [p for p in hook.parameters if p not in signature.parameters]
        if missing:
            raise DependencyError(
                f"{_nncf_version()}: {hook.where}{signature} has no parameter {', '.join(missing)}; {_SUPPORTED}"
            )


RankFn = Callable[[Callable[[], list[Any]], list[Any], Any], list[Any]]
StartFn = Callable[[Any, Any], Any]


@contextlib.contextmanager
def accuracy_control_hooks(*, validate_f32: bool, rank: RankFn, start_from: StartFn | None = None) -> Iterator[None]:
    """For the duration of the block: NNCF validates at f32 only when ``validate_f32``, and its ranking goes
    through ``rank(call_nncf, groups_to_rank, quantized_model)``, which must return the ranked groups (calling
    ``call_nncf()`` gives NNCF's own ranking). When NNCF quantizes, ``start_from(model, ignored_scope)`` may
    return the quantized model to use instead (uncompressed weights, a copy NNCF may change); ``None`` lets
    NNCF quantize."""
    if not _ACTIVE.acquire(blocking=False):
        raise ConcurrentQuantizeError(
            "another quantization with accuracy control is running in this process; ovq's NNCF hooks replace "
            "NNCF methods for the length of a call, so run them one after the other (or in separate processes)"
        )
    owners: list[tuple[type, str, Any]] = []
    try:
        check_contract()
        owner, original, signature = PRECISION.resolve()

        def prepared_init(*args: Any, **kwargs: Any) -> None:
            bound = signature.bind(*args, **kwargs)
            bound.arguments["use_fp32_precision"] = validate_f32
            original(*bound.args, **bound.kwargs)

        owners.append((owner, PRECISION.method, original))
        setattr(owner, PRECISION.method, prepared_init)

        r_owner, r_original, r_signature = RANKING.resolve()

        def rank_groups(*args: Any, **kwargs: Any) -> list[Any]:
            bound = r_signature.bind(*args, **kwargs)
            return rank(lambda: r_original(*args, **kwargs), bound.arguments["groups_to_rank"],
                        bound.arguments["quantized_model"])

        owners.append((r_owner, RANKING.method, r_original))
        setattr(r_owner, RANKING.method, rank_groups)

        if start_from is not None:
            from nncf.openvino.quantization.backend_parameters import is_weight_compression_needed

            q_owner, q_original, q_signature = QUANTIZE.resolve()

            def quantize_impl(*args: Any, **kwargs: Any) -> Any:
                bound = q_signature.bind(*args, **kwargs)
                advanced = bound.arguments.get("advanced_parameters")
                compressing = is_weight_compression_needed(advanced)  # NNCF's own reading of the option
                ready = None if compressing else start_from(bound.arguments["model"],
                                                            bound.arguments.get("ignored_scope"))
                return ready if ready is not None else q_original(*args, **kwargs)

            owners.append((q_owner, QUANTIZE.method, q_original))
            setattr(q_owner, QUANTIZE.method, quantize_impl)
        yield
    finally:
        for owner, name, original in reversed(owners):
            setattr(owner, name, original)
        _ACTIVE.release()


@contextlib.contextmanager
def nncf_progress(shown: bool) -> Iterator[None]:
    """NNCF's output goes to stderr for the block, as ovq's own log and bars do: its log through a handler of its
    own on standard output, its progress bars with rich on rich's global console, which writes there too (an
    ``ovq pipeline FILE --json`` that quantized printed some 30 ``INFO:nncf:`` lines and two bars above its JSON).
    With progress off, that console is quiet for the block. ``sys.stdout`` itself is never touched, so the rest of
    the process prints as usual."""
    import logging

    from rich import get_console

    console = get_console()
    was = console.quiet, console.stderr
    console.quiet, console.stderr = not shown, True
    moved = [(h, h.setStream(sys.stderr)) for h in logging.getLogger("nncf").handlers
             if isinstance(h, logging.StreamHandler) and _is_stdout(h.stream)]
    try:
        yield
    finally:
        console.quiet, console.stderr = was
        for handler, stream in moved:
            handler.setStream(stream)


def _is_stdout(stream: Any) -> bool:
    try:
        return stream is sys.stdout or stream.fileno() == 1
    except (AttributeError, OSError, ValueError):  # not a file (a test's capture)
        return False
