"""patch(): routes the dropout a model calls as a function (torch.nn.functional.dropout, dropout1d, dropout2d,
dropout3d, torch.dropout, torch.dropout_) and the nn.Dropout* modules to the fused ops, for code replace_dropout
cannot reach, such as HuggingFace's eager attention, which calls nn.functional.dropout on the softmax
probabilities.

Mechanism: module-level patching. patch() replaces the attributes named in ROUTES with wrappers of the same
signature, and the last unpatch() puts the original objects back. nn.Dropout, nn.Dropout1d/2d/3d and their
subclasses need no entry of their own: their forward looks up F.dropout (F.dropout1d, ...) in
torch.nn.functional at every call, and so does torch.nn.functional's own code (the dropout of
multi_head_attention_forward when need_weights=True).

Why not a TorchFunctionMode: both compile without graph breaks, and this module is faster in eager mode. Measured
with `python benchmarks/patch_mechanism.py` (torch 2.13, CPU): torch.compile(fullgraph=True, backend="aot_eager")
of a Linear + F.dropout + torch.dropout + nn.Dropout model in training mode gives 1 graph, 0 breaks
(torch._dynamo.explain) and three fused_dropout.dropout_fwd in the AOT forward graph, either way. Eager, on an
8-element float32 tensor, one thread, microseconds per call (one run on a shared 2-core machine: differences
under about 1 us are noise):

                        F.dropout   nn.Dropout   torch.dropout   x + y
    torch (no routing)     7.4         9.1           4.7          1.6
    fd.patch()             8.7        10.2           9.4          1.4    (fused_dropout.dropout direct: 9.7)
    TorchFunctionMode     15.1        18.5          13.2          4.0

A mode runs Python for every torch call while it is active (2 to 3 us more for each add, matmul, softmax of
the model), not only for dropout, and it is thread-local and a stack: a mode pushed by a plain patch() call would not
reach other threads (DataParallel replicas) and could not be popped by unpatch() once another mode was pushed
over it. Module-level patching costs nothing outside dropout and reaches every thread.

What is routed, and when: see patch(). Arguments the fused op does not take run torch's original function
(_fused_takes), so a call that works without patch() works with it.

Threads: the attributes are process-global, so patch() routes the calls of every thread. Install and uninstall
run under one lock with a reference count, so concurrent patch()/unpatch() calls from several threads leave the
attributes consistent. A thread calling F.dropout while another thread patches or unpatches gets either torch's
function or the wrapper (an attribute read is atomic), and either gives a valid dropout; a call that entered the
wrapper finishes in it, since the wrapper reads nothing unpatch() changes.
"""
from __future__ import annotations

import functools
import threading
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import Callable

import torch
import torch.nn.functional
from torch.overrides import handle_torch_function, has_torch_function_unary

from . import _validate as check
from . import backends
from . import functional as fused
from . import structured

# ---- which arguments the fused op takes ---------------------------------------------------------------------

_TENSOR = torch.Tensor
_PARAMETER = torch.nn.Parameter
_FLOAT_DTYPES = frozenset(check.FLOAT_DTYPES)
_STRIDED = torch.strided


def _fused_takes(input, p, training) -> bool:
    """True when the fused op computes this call as torch would: a dense float16/bfloat16/float32/float64 plain
    tensor (or nn.Parameter), p a Python float or int in [0, 1], training a bool. Anything else runs torch's
    original function, which accepts some of it (a bool, numpy or 0-d tensor p, an integer or sparse tensor in
    eval mode) and raises its own error for the rest (an out-of-range p, an int `training`, an integer, complex
    or sparse tensor in training). Tensor subclasses (DTensor, any subclass with __torch_dispatch__) are not
    routed: the fused op may have no rule for them."""
    return ((type(input) is _TENSOR or type(input) is _PARAMETER)
            and (type(p) is float or type(p) is int) and 0.0 <= p <= 1.0
            and (training is True or training is False)
            and input.dtype in _FLOAT_DTYPES and input.layout is _STRIDED and not input.is_nested)


# ---- the routing table: patched callable -> how its arguments map onto the fused op -----------------------------

def _functional_signature(fused_function: Callable) -> Callable:
    """For torch.nn.functional.dropout / dropout1d / dropout2d / dropout3d(input, p=0.5, training=True,
    inplace=False), routed to the fused function of the same semantics (fused_dropout.dropout, or the channel
    dropouts of fused_dropout.structured, which keep torch's rank rules): the same signature, inplace read as
    torch reads it (truthiness)."""

    def wrap(original: Callable, backend: str | None) -> Callable:
        def dropout(input, p=0.5, training=True, inplace=False):
            if has_torch_function_unary(input):  # tensor subclasses and TorchFunctionModes see it, as in torch
                return handle_torch_function(dropout, (input,), input, p=p, training=training, inplace=inplace)
            if _fused_takes(input, p, training):
                return fused_function(input, p, training, True if inplace else False, backend=backend)
            return original(input, p, training, inplace)

        return dropout

    return wrap


def _aten_signature(inplace: bool) -> Callable:
    """For torch.dropout(input, p, train) (inplace=False) and torch.dropout_(input, p, train) (inplace=True)."""

    def wrap(original: Callable, backend: str | None) -> Callable:
        def dropout(input, p, train):
            if has_torch_function_unary(input):
                return handle_torch_function(dropout, (input,), input, p, train)
            if _fused_takes(input, p, train):
                return fused.dropout(input, p, train, inplace, backend=backend)
            return original(input, p, train)

        return dropout

    return wrap


@dataclass(frozen=True)
class Route:
    """One patched callable: `owner.name` is replaced by `wrap(original, backend)` while patched."""
    owner: ModuleType
    name: str
    wrap: Callable[[Callable, "str | None"], Callable]

    @property
    def qualname(self) -> str:
        return f"{self.owner.__name__}.{self.name}"


ROUTES = (
    Route(torch.nn.functional, "dropout", _functional_signature(fused.dropout)),  # nn.Dropout(*) modules call it
    # Channel dropout (nn.Dropout1d/2d/3d call these): a mask shared along the spatial dimensions, which the
    # kernels take as their mask geometry.
    Route(torch.nn.functional, "dropout1d", _functional_signature(structured.dropout1d)),
    Route(torch.nn.functional, "dropout2d", _functional_signature(structured.dropout2d)),
    Route(torch.nn.functional, "dropout3d", _functional_signature(structured.dropout3d)),
    Route(torch, "dropout", _aten_signature(inplace=False)),
    Route(torch, "dropout_", _aten_signature(inplace=True)),
)

# Dropouts patch() leaves to torch, and why. Alpha dropout is another op (it keeps SELU's mean and variance), not
# this dropout; torch.feature_dropout is the op under torch's own channel dropouts, which take their rank rules
# before it (the routes above take the public functions, with those rules).
NOT_ROUTED = {
    "torch.feature_dropout": "channel dropout's op under F.dropout1d/2d/3d (those are routed)",
    "torch.nn.functional.alpha_dropout": "alpha dropout (nn.AlphaDropout), a different op",
    "torch.nn.functional.feature_alpha_dropout": "channel alpha dropout (nn.FeatureAlphaDropout), a different op",
    "torch.nn.functional.scaled_dot_product_attention": "its dropout_p runs inside the attention kernel",
}

# ---- install / uninstall, reference counted under one lock ------------------------------------------------------

_LOCK = threading.Lock()
_depth = 0  # patch() calls not yet matched by an unpatch()
_backend: str | None = None
_installed: list[tuple[Route, Callable, Callable]] = []  # (route, original, wrapper) while patched


# One wrapper per (route, original, backend), kept for the life of the process: TorchScript knows a wrapper by its
# id (_let_torchscript_compile_the_original), which must never be reused by another object, and repeated patch()
# calls install the same objects instead of growing torch.jit's tables. (torch.compile does not need this: it
# guards on the wrapper's code, and reuses its graphs across patch() and unpatch() either way.)
_WRAPPERS: dict[tuple[Route, Callable, "str | None"], Callable] = {}


def _wrapper(route: Route, original: Callable, backend: str | None) -> Callable:
    key = (route, original, backend)
    if key not in _WRAPPERS:
        wrapper = route.wrap(original, backend)
        functools.update_wrapper(wrapper, original, assigned=("__name__", "__doc__"))  # also sets __wrapped__
        wrapper.__qualname__ = wrapper.__name__
        _let_torchscript_compile_the_original(wrapper, original)
        _WRAPPERS[key] = wrapper
    return _WRAPPERS[key]


def _let_torchscript_compile_the_original(wrapper: Callable, original: Callable) -> None:
    """torch.jit.script cannot compile a wrapper (it calls the Python API), so it is told to compile torch's
    original in its place: scripting a model while patched works, and the scripted code runs torch's own op
    (TorchScript'd code is not routed). Through torch.jit's private tables; where they differ (another torch
    version), or when the original itself cannot be scripted, scripting under patch() fails as it would on any
    Python function."""
    try:
        builtin = torch.jit._builtins._find_builtin(original)  # "aten::dropout" for torch.dropout
        if builtin is not None:
            torch.jit._builtins._register_builtin(wrapper, builtin)
        else:
            with warnings.catch_warnings():  # torch.jit.script is deprecated: not this caller's concern
                warnings.simplefilter("ignore", DeprecationWarning)
                scripted = torch.jit.script(original)
            torch.jit._state._set_jit_function_cache(wrapper, scripted)
    except (AttributeError, RuntimeError, OSError, TypeError):
        pass


def _install(backend: str | None) -> None:
    for route in ROUTES:
        original = getattr(route.owner, route.name)
        wrapper = _wrapper(route, original, backend)
        _installed.append((route, original, wrapper))
        setattr(route.owner, route.name, wrapper)


def _uninstall() -> None:
    while _installed:
        _put_back(*_installed.pop())


def _put_back(route: Route, original: Callable, wrapper: Callable) -> None:
    if getattr(route.owner, route.name) is wrapper:
        setattr(route.owner, route.name, original)
    else:  # someone replaced our wrapper after patch(): putting torch's back would undo their change too
        warnings.warn(f"fused_dropout.unpatch(): {route.qualname} was replaced after patch(); it is left as it is "
                      f"(it may still route to the fused op)", RuntimeWarning, stacklevel=4)


def _check_backend(backend) -> None:
    if backend is not None and not isinstance(backend, str):
        raise TypeError(f"backend must be a str or None, got {type(backend).__name__}")
    if backend not in (None, "auto", *backends.KNOWN_BACKENDS):
        raise ValueError(f"unknown backend {backend!r}: choose from {['auto', *backends.KNOWN_BACKENDS]}")


class Patch:
    """What patch() returns: the patch is already active; using it as a context manager ends this one patch()
    call's share of it at the end of the block (also on an exception)."""

    def __init__(self) -> None:
        self._released = False

    def __enter__(self) -> Patch:
        if self._released:
            raise RuntimeError("this patch() was already ended; call fused_dropout.patch() again")
        return self

    def __exit__(self, *exc) -> None:
        if not self._released:
            self._released = True
            unpatch()


def patch(*, backend: str | None = None) -> Patch:
    """Routes torch's dropout to the fused ops until unpatch(), or for a ``with`` block.

    While active, these run the fused dropout (fused_dropout.dropout, or fused_dropout.dropout1d/2d/3d) with the
    same arguments and train/eval semantics (inplace honoured, the input itself returned in eval mode or with
    p = 0, torch's input-rank rules for channel dropout):

    - ``torch.nn.functional.dropout``, and through it ``nn.Dropout`` and its subclasses;
    - ``torch.nn.functional.dropout1d`` / ``dropout2d`` / ``dropout3d``, and through them ``nn.Dropout1d/2d/3d``
      (one mask decision per sample and channel, which the kernels take as their mask geometry);
    - ``torch.dropout`` and ``torch.dropout_`` (in place).

    Not routed (torch's own op runs): ``torch.feature_dropout`` called directly, alpha dropout, the dropout inside
    ``scaled_dot_product_attention(dropout_p=...)`` (so ``nn.MultiheadAttention(dropout=...)`` called with
    ``need_weights=False``; with ``need_weights=True`` it calls F.dropout and is routed), calls made from
    C++ (``at::dropout`` in another extension), TorchScript'd code, ``torch.export`` (its fake tensors take torch's
    function, so an exported program holds aten.dropout), and a name bound before patch() with ``from
    torch.nn.functional import dropout``. A call the fused op cannot take (a tensor subclass, an integer,
    complex or sparse tensor, p given as a tensor, bool or numpy scalar) runs torch's original function.

    Reference counted: each patch() must be matched by one unpatch() (or the end of its ``with`` block); the
    original functions come back when the last one ends, so a ``with patch():`` inside a plain ``patch()``
    leaves dropout routed. Process-wide: every thread's calls are routed; patch() and unpatch() are safe to
    call from several threads.

    Args:
        backend: passed to every fused call (``"cpu"``, ``"cuda"``, ``"triton"``, ``"torch"``; ``None`` or
            ``"auto"`` picks per tensor, as fused_dropout.dropout does). Keyword only. A patch() while patched
            must ask for the same backend.

    Returns:
        A context manager; ``with fused_dropout.patch(): ...`` ends the patch at the end of the block.

    Raises:
        TypeError, ValueError: an unknown backend, or another backend than the active patch's.
    """
    global _depth, _backend
    _check_backend(backend)
    with _LOCK:
        if _depth == 0:
            _install(backend)
            _backend = backend
        elif backend != _backend:
            raise ValueError(f"fused_dropout.patch(backend={backend!r}) while patched with backend={_backend!r}: "
                             "unpatch() first")
        _depth += 1
    return Patch()


def unpatch() -> None:
    """Ends one patch() call; the last one puts back the exact objects patch() replaced. Does nothing when
    nothing is patched."""
    global _depth, _backend
    with _LOCK:
        if _depth == 0:
            return
        _depth -= 1
        if _depth == 0:
            _uninstall()
            _backend = None


def is_patched() -> bool:
    """Whether dropout is routed to the fused ops now (some patch() is not yet ended)."""
    return _depth > 0
