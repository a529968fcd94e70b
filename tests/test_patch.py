"""fused_dropout.patch(): every dropout a model calls as a function or as an nn.Dropout runs the fused ops while
patched, with torch's semantics, and unpatch() gives torch's functions back."""
import contextlib
import math
import sys
import threading
import time
import warnings

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import fused_dropout as fd
from fused_dropout import patching
from conftest import make_input

F = torch.nn.functional
ORIGINALS = {"F.dropout": F.dropout, "torch.dropout": torch.dropout, "torch.dropout_": torch.dropout_}
TORCH_DROPOUT_OPS = ("aten.native_dropout", "aten.bernoulli")  # aten.bernoulli_ and .p too, by prefix


def current():
    return {"F.dropout": F.dropout, "torch.dropout": torch.dropout, "torch.dropout_": torch.dropout_}


@pytest.fixture(autouse=True)
def _always_unpatched():
    """Every test starts and ends with torch's own functions, whatever it does."""
    assert current() == ORIGINALS and not patching.is_patched()
    yield
    while patching.is_patched():
        fd.unpatch()
    assert all(current()[name] is ORIGINALS[name] for name in ORIGINALS)


class OpLog(TorchDispatchMode):
    """The ATen and custom ops that run (forward and backward) inside the block."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))

    def fused(self, suffix="_fwd"):
        return [op for op in self.ops if op.startswith("fused_dropout.") and op.split(".")[1].endswith(suffix)]

    def torch_dropout(self):
        return [op for op in self.ops if op.startswith(TORCH_DROPOUT_OPS)]


class Attention(nn.Module):
    """A self-attention block with the dropouts of a HuggingFace model: torch.dropout on the input (an embedding
    dropout), nn.functional.dropout on the softmax probabilities (as HF's eager attention does), and an
    nn.Dropout on the output projection."""

    def __init__(self, d: int = 16, heads: int = 2, p: float = 0.25):
        super().__init__()
        self.heads, self.p = heads, p
        self.q, self.k, self.v, self.out = (nn.Linear(d, d) for _ in range(4))
        self.resid_dropout = nn.Dropout(p)

    def forward(self, x):
        b, t, d = x.shape
        x = torch.dropout(x, self.p, self.training)

        def split(h):
            return h.view(b, t, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // self.heads), dim=-1)
        probs = nn.functional.dropout(probs, p=self.p, training=self.training)
        h = (probs @ v).transpose(1, 2).reshape(b, t, d)
        return self.resid_dropout(self.out(h))


def attention_and_input():
    torch.manual_seed(0)
    return Attention(), make_input((2, 5, 16))


# ---- the model of the issue ------------------------------------------------------------------------------------

def test_eval_outputs_are_bit_identical_with_and_without_patch():
    model, x = attention_and_input()
    model.eval()
    expected = model(x)
    with fd.patch():
        patched = model(x)
    assert torch.equal(patched.view(torch.int32), expected.view(torch.int32))


def test_training_runs_every_dropout_on_the_fused_ops_and_none_on_torchs():
    model, x = attention_and_input()
    x.requires_grad_(True)  # so that the first dropout has a backward too
    with OpLog() as unpatched:
        model(x).sum().backward()
    assert len(unpatched.torch_dropout()) >= 3 and not unpatched.fused()  # the log sees torch's dropout
    with fd.patch(), OpLog() as log:
        model(x).sum().backward()
    assert log.torch_dropout() == []
    assert log.fused() == ["fused_dropout.dropout_fwd.default"] * 3  # torch.dropout, F.dropout, nn.Dropout
    assert log.fused("_bwd") == ["fused_dropout.mask_bwd.default"] * 3


def test_gradients_flow_through_the_patched_model():
    model, x = attention_and_input()
    x.requires_grad_(True)
    with fd.patch():
        model(x).square().sum().backward()
    for name, param in [("x", x), *model.named_parameters()]:
        assert param.grad is not None and bool(param.grad.isfinite().all()) and bool(param.grad.ne(0).any()), name


def test_input_gradient_is_the_fused_ops_gradient():
    x, g = make_input((64,), requires_grad=True), make_input((64,), seed=1)
    with fd.patch():
        torch.manual_seed(5)
        y = F.dropout(x, 0.4)
    y.backward(g)
    x2 = x.detach().clone().requires_grad_(True)
    torch.manual_seed(5)
    y2 = fd.dropout(x2, 0.4)
    y2.backward(g)
    assert torch.equal(y, y2) and torch.equal(x.grad, x2.grad)


def test_inplace_dropout_of_an_intermediate_result_backpropagates():
    """nn.Dropout(inplace=True) after a Linear, as models write it: the in-place fused result has the
    out-of-place one's value and gradients."""
    lin, x = nn.Linear(8, 8), make_input((4, 8))
    grads = []
    for inplace in (False, True):
        lin.zero_grad()
        with fd.patch():
            torch.manual_seed(6)
            y = nn.Dropout(0.5, inplace=inplace)(lin(x))
        y.square().sum().backward()
        grads.append((y.detach(), lin.weight.grad.clone(), lin.bias.grad.clone()))
    assert all(torch.equal(a, b) for a, b in zip(*grads))


# ---- every routed callable: the same arguments and semantics as torch's ---------------------------------------

# (name, call(x, p, training), inplace): each calling form a model uses, positional and keyword. (The dropout
# torch.nn.functional calls itself, in multi_head_attention_forward: test_multihead_attention_weights_path_is_routed.)
ROUTED_CALLS = [
    ("F.dropout", lambda x, p, t: F.dropout(x, p, t), False),
    ("F.dropout keywords", lambda x, p, t: F.dropout(input=x, p=p, training=t, inplace=False), False),
    ("F.dropout inplace", lambda x, p, t: F.dropout(x, p, t, True), True),
    ("F.dropout inplace=1", lambda x, p, t: F.dropout(x, p, training=t, inplace=1), True),  # torch reads it as true
    ("nn.Dropout", lambda x, p, t: nn.Dropout(p).train(t)(x), False),
    ("nn.Dropout inplace", lambda x, p, t: nn.Dropout(p, inplace=True).train(t)(x), True),
    ("torch.dropout", lambda x, p, t: torch.dropout(x, p, t), False),
    ("torch.dropout keywords", lambda x, p, t: torch.dropout(input=x, p=p, train=t), False),
    ("torch.dropout_", lambda x, p, t: torch.dropout_(x, p, t), True),
]


@pytest.mark.parametrize("name, call, inplace", ROUTED_CALLS, ids=[c[0] for c in ROUTED_CALLS])
def test_each_call_gives_fused_dropouts_result_and_mask(name, call, inplace):
    x = make_input((8, 33))
    torch.manual_seed(11)
    expected = fd.dropout(x, 0.3)
    with fd.patch(), OpLog() as log:
        torch.manual_seed(11)
        y = call(x.clone(), 0.3, True)
    assert torch.equal(y, expected)
    assert log.fused() == ["fused_dropout.dropout_fwd.default"] and log.torch_dropout() == []


@pytest.mark.parametrize("name, call, inplace", ROUTED_CALLS, ids=[c[0] for c in ROUTED_CALLS])
@pytest.mark.parametrize("patched", [False, True], ids=["torch", "patched"])
def test_inplace_is_honoured_as_torch_honours_it(name, call, inplace, patched):
    """The input is overwritten and returned iff the call is in place; eval mode and p = 0 return the input
    itself and leave it alone. Checked on torch's own functions too, so that this is torch's behaviour."""
    with fd.patch() if patched else contextlib.nullcontext():
        x = make_input((4, 16))
        before = x.clone()
        y = call(x, 0.5, True)
        assert (y is x) == inplace
        assert torch.equal(x, y) == inplace and torch.equal(x, before) != inplace
        for p, training in [(0.5, False), (0.0, True)]:
            x = make_input((4, 16))
            before = x.clone()
            assert call(x, p, training) is x and torch.equal(x, before)


def test_multihead_attention_weights_path_is_routed():
    """nn.MultiheadAttention(need_weights=True) drops its attention weights with torch.nn.functional's own global
    dropout, which is the patched attribute; with need_weights=False it runs scaled_dot_product_attention, whose
    dropout patch() cannot reach."""
    mha, x = nn.MultiheadAttention(16, 2, dropout=0.2, batch_first=True), make_input((2, 5, 16))
    with fd.patch():
        with OpLog() as weights:
            mha(x, x, x, need_weights=True)
        with OpLog() as sdpa:
            mha(x, x, x, need_weights=False)
    assert weights.fused() == ["fused_dropout.dropout_fwd.default"] and weights.torch_dropout() == []
    assert sdpa.fused() == []


def test_backend_is_passed_to_the_fused_ops():
    x = make_input((4, 8))
    with fd.patch(backend="torch"), OpLog() as log:
        torch.manual_seed(2)
        y = F.dropout(x, 0.5)
    torch.manual_seed(2)
    assert torch.equal(y, fd.dropout(x, 0.5))  # every backend gives the same bits
    assert log.fused() == ["fused_dropout.torch_dropout_fwd.default"]


# ---- what is not routed ------------------------------------------------------------------------------------------

# Channel dropout, through the functions and the modules, with torch's rank rules (batched and unbatched):
# (name, call of torch's API, the fused function it must equal for the same seed).
CHANNEL_CALLS = [
    ("F.dropout1d", lambda x: F.dropout1d(x, 0.5), lambda x: fd.dropout1d(x, 0.5)),
    ("F.dropout1d-unbatched", lambda x: F.dropout1d(x[0], 0.5), lambda x: fd.dropout1d(x[0], 0.5)),
    ("F.dropout2d", lambda x: F.dropout2d(x.unsqueeze(0), 0.5), lambda x: fd.dropout2d(x.unsqueeze(0), 0.5)),
    ("F.dropout2d-unbatched", lambda x: F.dropout2d(x, 0.5), lambda x: fd.dropout2d(x, 0.5)),
    ("F.dropout3d", lambda x: F.dropout3d(x.unsqueeze(0).unsqueeze(0), 0.5),
     lambda x: fd.dropout3d(x.unsqueeze(0).unsqueeze(0), 0.5)),
    ("nn.Dropout1d", lambda x: nn.Dropout1d(0.5)(x), lambda x: fd.dropout1d(x, 0.5)),
    ("nn.Dropout2d", lambda x: nn.Dropout2d(0.5)(x.unsqueeze(0)), lambda x: fd.dropout2d(x.unsqueeze(0), 0.5)),
    ("nn.Dropout3d-inplace", lambda x: nn.Dropout3d(0.5, inplace=True)(x.unsqueeze(0).unsqueeze(0).clone()),
     lambda x: fd.dropout3d(x.unsqueeze(0).unsqueeze(0), 0.5)),
]


def seeded_and_patched(call, x):
    """(call(x) with seed 4 drawn outside patch(), the same call under patch() with its op log)."""
    torch.manual_seed(4)
    unpatched = call(x)
    with fd.patch(), OpLog() as log:
        torch.manual_seed(4)
        patched = call(x)
    return unpatched, patched, log


@pytest.mark.parametrize("name, call, fused_call", CHANNEL_CALLS, ids=[c[0] for c in CHANNEL_CALLS])
def test_channel_dropout_is_routed_with_torchs_rank_rules(name, call, fused_call):
    x = make_input((3, 4, 5))
    torch.manual_seed(4)
    expected = fused_call(x)
    _, y, log = seeded_and_patched(call, x)
    assert torch.equal(y, expected)
    assert log.fused() == ["fused_dropout.dropout_fwd.default"] and log.torch_dropout() == []


@pytest.mark.parametrize("module", [nn.Dropout1d(0.5), nn.Dropout2d(0.5), nn.Dropout3d(0.5)])
def test_channel_dropout_modules_in_eval_mode_are_unchanged_by_patch(module):
    x = make_input((2, 3, 4, 5, 6)[: 3 + [nn.Dropout1d, nn.Dropout2d, nn.Dropout3d].index(type(module))])
    expected = module.eval()(x)
    with fd.patch(), OpLog() as log:
        y = module(x)
    assert torch.equal(y, expected) and log.torch_dropout() == []


# Alpha dropout, and channel dropout's op called directly, run torch's own op under patch().
NOT_ROUTED_CALLS = [
    ("torch.feature_dropout", lambda x: torch.feature_dropout(x, 0.5, True)),
    ("F.alpha_dropout", lambda x: F.alpha_dropout(x, 0.5, True)),
    ("nn.AlphaDropout", lambda x: nn.AlphaDropout(0.5)(x)),
    ("F.feature_alpha_dropout", lambda x: F.feature_alpha_dropout(x, 0.5, True)),
    ("nn.FeatureAlphaDropout", lambda x: nn.FeatureAlphaDropout(0.5)(x)),
]


@pytest.mark.parametrize("name, call", NOT_ROUTED_CALLS, ids=[c[0] for c in NOT_ROUTED_CALLS])
def test_alpha_dropout_and_feature_dropout_still_run_torchs_own_op(name, call):
    expected, y, log = seeded_and_patched(call, make_input((3, 4, 5)))
    assert torch.equal(y, expected)
    assert log.fused() == [] and log.torch_dropout() != []


def test_the_routing_table_names_what_it_routes_and_what_it_leaves():
    routed = {route.qualname for route in patching.ROUTES}
    assert routed == {"torch.nn.functional.dropout", "torch.nn.functional.dropout1d",
                      "torch.nn.functional.dropout2d", "torch.nn.functional.dropout3d", "torch.dropout",
                      "torch.dropout_"}
    assert not routed & set(patching.NOT_ROUTED)
    for qualname in patching.NOT_ROUTED:  # each entry names a real torch function
        module, _, name = qualname.rpartition(".")
        assert callable(getattr(sys.modules[module], name))
    with fd.patch():
        assert F.alpha_dropout is F.alpha_dropout.__globals__["alpha_dropout"]  # untouched: torch's own function
        assert F.alpha_dropout.__module__ == "torch.nn.functional"


SDPA_SKIP = pytest.mark.skipif(not hasattr(F, "scaled_dot_product_attention"), reason="torch without SDPA")


@SDPA_SKIP
def test_scaled_dot_product_attention_dropout_is_not_reached():
    q = make_input((1, 2, 4, 8))
    with fd.patch(), OpLog() as log:
        F.scaled_dot_product_attention(q, q, q, dropout_p=0.5)
    assert log.fused() == []


def test_torch_export_keeps_torchs_dropout():
    """torch.export traces with fake tensors, a tensor subclass: the wrapper hands them to torch's function, so an
    exported program holds aten.dropout and needs no fused_dropout to load."""
    with fd.patch():
        exported = torch.export.export(nn.Dropout(0.3).train(), (make_input((2, 8)),))
    ops = [str(node.target) for node in exported.graph.nodes if node.op == "call_function"]
    assert ops == ["aten.dropout.default"]


# ---- arguments the fused op does not take: torch's original function, its result and its errors ---------------

class LoggingTensor(torch.Tensor):
    """A tensor subclass with the default __torch_function__ (results stay LoggingTensors)."""


# (name, call): run once without patch and once with it; both must give the same result or the same error.
FALLBACKS = [
    ("p as a 0-d tensor", lambda x: F.dropout(x, torch.tensor(0.5))),
    ("torch.dropout p as a 0-d tensor", lambda x: torch.dropout(x, torch.tensor(0.5), True)),
    ("p requiring grad", lambda x: F.dropout(x, torch.tensor(0.5, requires_grad=True))),
    ("p a bool", lambda x: F.dropout(x, True)),
    ("p out of range", lambda x: F.dropout(x, 1.5)),
    ("p negative in eval", lambda x: F.dropout(x, -0.1, False)),
    ("p NaN", lambda x: F.dropout(x, float("nan"))),
    ("torch.dropout p out of range", lambda x: torch.dropout(x, 1.5, True)),
    ("torch.dropout_ p NaN", lambda x: torch.dropout_(x, float("nan"), True)),
    ("training an int", lambda x: F.dropout(x, 0.5, 1)),
    ("torch.dropout train None", lambda x: torch.dropout(x, 0.5, None)),
    ("an integer tensor in eval", lambda x: F.dropout(x.long(), 0.5, False)),
    ("an integer tensor in training", lambda x: F.dropout(x.long(), 0.5)),
    ("a bool tensor", lambda x: torch.dropout(x > 0, 0.5, True)),
    ("a complex tensor", lambda x: F.dropout(torch.complex(x, x), 0.5)),
    ("a sparse tensor", lambda x: F.dropout(x.to_sparse(), 0.5)),
    ("a sparse tensor in eval", lambda x: F.dropout(x.to_sparse(), 0.5, False)),
    ("a tensor subclass", lambda x: F.dropout(x.as_subclass(LoggingTensor), 0.5)),
    ("torch.dropout_ of a tensor subclass", lambda x: torch.dropout_(x.as_subclass(LoggingTensor), 0.5, True)),
    ("no input", lambda x: F.dropout(None, 0.5)),
]


def _outcome(call, x):
    torch.manual_seed(3)
    try:
        y = call(x)
    except Exception as error:  # noqa: BLE001 - the error itself is the outcome compared
        return type(error), str(error).split("\n")[0]
    return type(y), y.to_dense() if y.is_sparse else y


@pytest.mark.parametrize("name, call", FALLBACKS, ids=[c[0] for c in FALLBACKS])
def test_what_the_fused_op_does_not_take_runs_torchs_own_function(name, call):
    x = make_input((4, 8))
    expected = _outcome(call, x.clone())
    with fd.patch(), OpLog() as log:
        got = _outcome(call, x.clone())
    assert got[0] is expected[0]
    if isinstance(expected[1], torch.Tensor):
        assert torch.equal(got[1], expected[1])
    else:
        assert got[1] == expected[1]
    assert log.fused() == []


def _inference_tensor():
    with torch.inference_mode():
        return make_input((4, 8))


# Routed calls that torch refuses: the fused path refuses them with torch's own error.
REFUSED_IN_PLACE = [
    ("torch.dropout_ of a leaf requiring grad", lambda: torch.dropout_(make_input((4, 8), requires_grad=True), 0.5,
                                                                         True)),
    ("F.dropout inplace of a leaf requiring grad", lambda: F.dropout(make_input((4, 8), requires_grad=True), 0.5,
                                                                      inplace=True)),
    ("nn.Dropout inplace of an inference tensor", lambda: nn.Dropout(0.5, inplace=True)(_inference_tensor())),
]


@pytest.mark.parametrize("name, call", REFUSED_IN_PLACE, ids=[c[0] for c in REFUSED_IN_PLACE])
def test_in_place_misuse_raises_torchs_own_error(name, call):
    with pytest.raises(RuntimeError) as torchs:
        call()
    with fd.patch(), OpLog() as log, pytest.raises(RuntimeError) as patched:
        call()
    assert str(patched.value) == str(torchs.value)
    assert log.fused() == ["fused_dropout.dropout_fwd.default"]  # routed: the fused op ran, the write was refused


def test_a_torch_function_mode_still_sees_the_call_and_it_is_routed():
    """As torch's F.dropout does, the wrapper hands the call to an active TorchFunctionMode first; the mode's
    own call of the function is then routed (torch.device(...) is such a mode)."""
    seen = []

    class Record(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            seen.append(func)
            return func(*args, **(kwargs or {}))

    x = make_input((4, 8))
    with fd.patch(), OpLog() as log:
        wrappers = [F.dropout, torch.dropout]
        with Record():
            F.dropout(x, 0.5)
            torch.dropout(x, 0.5, True)
        with torch.device("cpu"):
            F.dropout(x, 0.5)
    assert seen == wrappers
    assert log.fused() == ["fused_dropout.dropout_fwd.default"] * 3 and log.torch_dropout() == []


# ---- patch() and unpatch() -------------------------------------------------------------------------------------

def test_unpatch_restores_the_exact_original_objects():
    handle = fd.patch()
    assert isinstance(handle, patching.Patch) and patching.is_patched()
    assert all(current()[name] is not ORIGINALS[name] for name in ORIGINALS)
    assert F.dropout.__wrapped__ is ORIGINALS["F.dropout"] and F.dropout.__name__ == "dropout"
    fd.unpatch()
    assert all(current()[name] is ORIGINALS[name] for name in ORIGINALS)
    assert not patching.is_patched()
    with OpLog() as log:
        nn.Dropout()(make_input((4, 8)))
    assert log.fused() == [] and log.torch_dropout() != []


def test_patch_is_reference_counted():
    fd.patch()
    with fd.patch():
        assert patching.is_patched()
    assert patching.is_patched() and F.dropout is not ORIGINALS["F.dropout"]  # the outer plain patch() remains
    first = F.dropout
    fd.patch()
    assert F.dropout is first  # a patch() while patched changes nothing
    fd.unpatch()
    assert F.dropout is first
    fd.unpatch()
    assert current() == ORIGINALS
    fd.unpatch()  # nothing patched: does nothing
    assert current() == ORIGINALS
    with fd.patch():
        assert F.dropout is first  # the same wrapper again (TorchScript knows it by its id)


def test_context_manager_restores_on_exception():
    with pytest.raises(KeyError):
        with fd.patch():
            assert patching.is_patched()
            raise KeyError("in the block")
    assert current() == ORIGINALS and not patching.is_patched()


def test_a_handle_ends_its_own_patch_once():
    handle = fd.patch()
    fd.patch()
    with handle:
        pass
    assert patching.is_patched()  # the second patch() is still active
    handle.__exit__(None, None, None)  # a second exit of the same handle does nothing
    assert patching.is_patched()
    with pytest.raises(RuntimeError, match="already ended"):
        with handle:
            pass
    fd.unpatch()
    assert not patching.is_patched()


def test_backend_argument_is_checked_and_must_agree_with_the_active_patch():
    with pytest.raises(ValueError, match="unknown backend"):
        fd.patch(backend="gpu")
    with pytest.raises(TypeError, match="backend"):
        fd.patch(backend=1)
    assert not patching.is_patched()
    with fd.patch(backend="torch"):
        with pytest.raises(ValueError, match="while patched"):
            fd.patch(backend="cpu")
        with fd.patch(backend="torch"):
            pass
        assert patching.is_patched()


def test_unpatch_leaves_a_function_replaced_after_patch():
    other = lambda *args, **kwargs: None  # noqa: E731 - someone else's patch, installed over ours
    fd.patch()
    wrapper = torch.dropout
    torch.dropout = other
    try:
        with pytest.warns(RuntimeWarning, match="torch.dropout was replaced"):
            fd.unpatch()
        assert torch.dropout is other
        assert F.dropout is ORIGINALS["F.dropout"] and torch.dropout_ is ORIGINALS["torch.dropout_"]
    finally:
        torch.dropout = ORIGINALS["torch.dropout"]
    assert wrapper is not other


def test_a_function_patched_before_patch_is_called_and_restored():
    """Another library's F.dropout, installed before patch(): the fallback calls it, unpatch() puts it back."""
    calls = []

    def theirs(input, p=0.5, training=True, inplace=False):
        calls.append(p)
        return ORIGINALS["F.dropout"](input, p, training, inplace)

    F.dropout = theirs
    try:
        with fd.patch():
            F.dropout(make_input((4, 8)), True)  # a bool p: the fallback
            F.dropout(make_input((4, 8)), 0.5)  # routed
        assert F.dropout is theirs and calls == [True]
    finally:
        F.dropout = ORIGINALS["F.dropout"]


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_compiles_torchs_own_dropout_while_patched():
    """Scripting a model while patched works; the scripted code calls torch's own ops (not routed)."""
    with fd.patch():
        scripted = torch.jit.script(ScriptedDropouts())
        with OpLog() as log:
            scripted(make_input((4, 8)))
    assert log.fused() == [] and len(log.torch_dropout()) >= 3


class ScriptedDropouts(nn.Module):
    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return torch.dropout_(torch.dropout(F.dropout(self.drop(x), 0.3, self.training), 0.2, True), 0.1, True)


# ---- threads -----------------------------------------------------------------------------------------------------

def test_patch_reaches_every_thread():
    result = {}

    def worker():
        with OpLog() as log:  # dispatch modes are per thread: log this thread's ops
            F.dropout(make_input((4, 8)), 0.5)
        result["ops"] = log.fused()

    with fd.patch():
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
    assert result["ops"] == ["fused_dropout.dropout_fwd.default"]


def test_a_patch_waits_for_an_unpatch_in_progress(monkeypatch):
    """One thread's patch() arriving while another thread's unpatch() is putting torch's functions back waits for
    it, then installs afresh: dropout is routed inside its block and torch's functions are back after it (without
    the lock it would install over half-restored attributes and leave a wrapper behind)."""
    uninstalling, install_started, install_done = threading.Event(), threading.Event(), threading.Event()
    put_back, install = patching._put_back, patching._install

    def slow_put_back(*args):
        if not uninstalling.is_set():
            uninstalling.set()
            if install_started.wait(timeout=0.2):  # with the lock, the other patch() cannot install meanwhile
                install_done.wait(timeout=10)
        put_back(*args)

    def watched_install(backend):
        install_started.set()
        install(backend)
        install_done.set()

    fd.patch()
    monkeypatch.setattr(patching, "_put_back", slow_put_back)
    monkeypatch.setattr(patching, "_install", watched_install)
    unpatcher = threading.Thread(target=fd.unpatch)
    unpatcher.start()
    assert uninstalling.wait(timeout=10)
    with fd.patch():
        unpatcher.join()  # the other thread's unpatch() is over: this patch() must still be in force
        routed_inside = all(current()[name] is not ORIGINALS[name] for name in ORIGINALS)
    assert routed_inside
    assert current() == ORIGINALS and not patching.is_patched()


def _yielding(fn):
    def yielding(*args):
        time.sleep(1e-5)
        return fn(*args)

    return yielding


def test_concurrent_patch_unpatch_and_calls_stay_consistent(monkeypatch):
    """Threads entering and leaving patch() while others call dropout: no error, every result a valid dropout
    (each element 0 or x / (1 - p)), routed inside every patch() block, torch's functions back at the end.
    Installing and putting back a function yield to the other threads here (as slow ones would), so that only the
    lock keeps install and uninstall whole."""
    for step in ("_wrapper", "_put_back"):
        monkeypatch.setattr(patching, step, _yielding(getattr(patching, step)))
    errors, x = [], make_input((64,))

    threads_ready = threading.Barrier(4)  # all start together, so that their loops overlap

    def patcher():
        threads_ready.wait()
        try:
            for _ in range(500):
                with fd.patch():
                    if any(current()[name] is ORIGINALS[name] for name in ORIGINALS):
                        errors.append(AssertionError("not routed inside a patch() block"))
                    F.dropout(x, 0.5)
        except Exception as error:  # noqa: BLE001 - collected and reported by the main thread
            errors.append(error)

    def caller():
        threads_ready.wait()
        try:
            for _ in range(200):
                for y in (F.dropout(x, 0.5), torch.dropout(x, 0.5, True), nn.Dropout(0.5)(x)):
                    kept = y != 0
                    if not torch.equal(y[kept], x[kept] * 2):
                        errors.append(AssertionError("not a dropout of x"))
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=patcher) for _ in range(3)] + [threading.Thread(target=caller)]
    with warnings.catch_warnings(record=True) as warned:  # e.g. unpatch() finding another patch's wrapper
        warnings.simplefilter("always")
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == [] and [str(w.message) for w in warned] == []
    assert current() == ORIGINALS and not patching.is_patched()


# ---- torch.compile ---------------------------------------------------------------------------------------------

def _aot_graph_ops(captured):
    """A torch.compile backend: aot_eager that records the ops of each AOT forward graph it compiles."""
    from functorch.compile import make_boxed_func
    from torch._functorch.aot_autograd import aot_module_simplified

    def backend(gm, example_inputs):
        def forward_compiler(graph, _):
            captured.append([str(node.target) for node in graph.graph.nodes if node.op == "call_function"])
            return make_boxed_func(graph.forward)

        return aot_module_simplified(gm, example_inputs, fw_compiler=forward_compiler,
                                     bw_compiler=lambda graph, _: make_boxed_func(graph.forward))

    return backend


def test_compile_fullgraph_with_patch_active():
    """Compiled with aot_eager (a copy that records the forward graph), not inductor: graph breaks and the routing
    are decided by dynamo and the AOT autograd trace, which this runs; inductor would only add a C++ compilation of
    the same graph (tens of seconds on a CPU; tests/test_compile_opcheck.py compiles the fused ops with it)."""
    model, x = attention_and_input()
    graphs = []
    compiled = torch.compile(model, fullgraph=True, backend=_aot_graph_ops(graphs))
    torch._dynamo.reset()
    with fd.patch():
        compiled(x).sum().backward()
    assert len(graphs) == 1
    assert sum(op == "fused_dropout.dropout_fwd.default" for op in graphs[0]) == 3
    assert not any(op.startswith(TORCH_DROPOUT_OPS) for op in graphs[0])
    assert all(p.grad is not None for p in model.parameters())
    compiled(x)  # unpatched: torch.compile guards on the patched attributes and recompiles with torch's dropout
    assert len(graphs) == 2 and sum(op.startswith("aten.native_dropout") for op in graphs[1]) == 3
    with fd.patch():
        compiled(x)  # patched again: the first graph is reused
    assert len(graphs) == 2
    torch._dynamo.reset()
