"""Hostile inputs found by property fuzzing: shared modules, tensor and numpy scalars where Python numbers are
expected, and tensors of a layout the kernels cannot read. Every failure must name the argument."""
import fractions
import math
import re
import sys
import warnings

import pytest
import torch
from torch import nn

import fused_dropout as fd
from conftest import CPU_BACKENDS, make_input

try:  # numpy is optional: its cases run only when it is installed
    import numpy as np
except ImportError:  # pragma: no cover
    np = None


def plain_dropouts(model):
    """Every place (not every distinct module) that holds a plain nn.Dropout."""
    return [name for name, m in model.named_modules(remove_duplicate=False) if type(m) is nn.Dropout]


# ---- 1. replace_dropout and shared modules ---------------------------------------------------------------------


def test_replace_dropout_replaces_every_place_of_a_shared_dropout():
    shared = nn.Dropout(0.3, inplace=True)
    shared.eval()
    model = nn.Sequential(shared, nn.Linear(4, 4), shared, nn.Sequential(nn.ReLU(), shared))
    fd.replace_dropout(model)
    assert plain_dropouts(model) == []
    fused = model[0]
    assert isinstance(fused, fd.FusedDropout)
    assert model[2] is fused and model[3][1] is fused  # sharing is preserved: one module, three places
    assert (fused.p, fused.inplace, fused.training) == (0.3, True, False)


def test_replace_dropout_shares_across_parents_and_leaves_subclasses_alone():
    class MyDropout(nn.Dropout):
        pass

    shared, custom = nn.Dropout(0.2), MyDropout(0.4)
    first, second = nn.Sequential(shared, custom), nn.Sequential(nn.Identity(), shared)
    model = nn.ModuleDict({"a": first, "b": second, "c": first})  # `first` itself is also shared
    fd.replace_dropout(model)
    assert plain_dropouts(model) == []
    assert isinstance(model["a"][0], fd.FusedDropout) and model["a"][0] is model["b"][1]
    assert model["a"][1] is custom and type(custom) is MyDropout
    assert model["c"] is first


def test_replace_dropout_on_a_module_list_holding_one_dropout_twice():
    shared = nn.Dropout(0.1)
    model = nn.ModuleList([shared, shared])
    fd.replace_dropout(model)
    assert isinstance(model[0], fd.FusedDropout) and model[1] is model[0]


# ---- 2. p: accept and reject exactly what nn.Dropout and torch.nn.functional.dropout do ------------------------

P_NAMED = re.compile(r"\bp\b")


class TensorSubclass(torch.Tensor):
    pass


def p_cases():
    """(id, p, the float it means or None when torch rejects it). The float is what our result is compared with."""
    cases = [
        ("float", 0.25, 0.25), ("int 0", 0, 0.0), ("int 1", 1, 1.0), ("float 0", 0.0, 0.0), ("float 1", 1.0, 1.0),
        ("negative", -0.1, None), ("above 1", 1.5, None), ("nan", math.nan, None), ("inf", math.inf, None),
        ("str", "0.5", None), ("None", None, None), ("complex", 0.5 + 0j, None),
        ("Fraction", fractions.Fraction(1, 2), None),
        ("0-d float32 tensor", torch.tensor(0.5), 0.5), ("0-d float64 tensor", torch.tensor(0.25, dtype=torch.float64), 0.25),
        # the float16 value of 0.1, exactly as torch reads it
        ("0-d float16 tensor", torch.tensor(0.1, dtype=torch.float16), 0.0999755859375),
        ("0-d int tensor 0", torch.tensor(0), 0.0), ("0-d int tensor 1", torch.tensor(1), 1.0),
        ("0-d uint8 tensor", torch.tensor(1, dtype=torch.uint8), 1.0),
        ("0-d tensor subclass", torch.tensor(0.5).as_subclass(TensorSubclass), 0.5),
        ("Parameter without grad", nn.Parameter(torch.tensor(0.5), requires_grad=False), 0.5),
        ("0-d tensor out of range", torch.tensor(1.5), None), ("0-d negative tensor", torch.tensor(-0.5), None),
        ("0-d nan tensor", torch.tensor(math.nan), None),
        ("0-d tensor requiring grad", torch.tensor(0.5, requires_grad=True), None),
        ("Parameter", nn.Parameter(torch.tensor(0.5)), None),
        ("1-element 1-d tensor", torch.tensor([0.5]), None), ("1x1 tensor", torch.tensor([[0.5]]), None),
        ("meta tensor", torch.tensor(0.5, device="meta"), None),
    ]
    if np is not None:
        cases += [
            ("np.float64", np.float64(0.25), 0.25), ("np.float32", np.float32(0.25), 0.25),
            ("np.float16", np.float16(0.25), 0.25), ("np.longdouble", np.longdouble(0.25), 0.25),
            ("np.int64 0", np.int64(0), 0.0), ("np.int64 1", np.int64(1), 1.0), ("np.uint8 1", np.uint8(1), 1.0),
            ("np.float64 above 1", np.float64(1.5), None), ("np.float64 nan", np.float64(math.nan), None),
            ("np 0-d array", np.array(0.5), None), ("np 1-d array", np.array([0.5]), None),
        ]
    return cases


# Where this API is deliberately stricter than torch: bools are not probabilities (tests/test_bad_input.py's BAD_P
# pins True -> TypeError), a numpy complex p would lose its imaginary part silently, and a complex tensor gets a
# TypeError where torch's `p < 0` happens to raise NotImplementedError.
STRICTER = [("bool True", True), ("bool False", False), ("0-d bool tensor", torch.tensor(True)),
            ("0-d complex tensor", torch.tensor(0.5 + 0j))]
if np is not None:
    STRICTER += [("np.bool_", np.bool_(True)), ("np.complex128", np.complex128(0.5))]


def outcome(call):
    """None if the call returns, else the exception."""
    try:
        call()
    except Exception as error:  # noqa: BLE001 - the exception is the result
        return error
    return None


def module_outcome(cls, p, x):
    """Construct, then run in training mode: None or the exception raised by either."""
    try:
        module = cls(p)
    except Exception as error:  # noqa: BLE001
        return error
    return outcome(lambda: module(x))


def assert_same_outcome(ours, theirs, what):
    if theirs is None:
        assert ours is None, f"{what}: torch accepts, we raised {ours!r}"
    else:
        assert ours is not None, f"{what}: torch raises {theirs!r}, we accepted"
        assert isinstance(ours, type(theirs)), f"{what}: torch raises {type(theirs).__name__}, we raised {ours!r}"
        assert P_NAMED.search(str(ours)), f"{what}: {ours!r} does not name p"


@pytest.mark.parametrize("case", p_cases(), ids=lambda case: case[0])
def test_p_is_accepted_and_rejected_like_torch(case):
    _, p, meaning = case
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    torch_f = outcome(lambda: nn.functional.dropout(x, p))
    assert (torch_f is None) == (meaning is not None), f"the table is wrong about torch: {torch_f!r}"
    for training in (True, False):
        assert_same_outcome(outcome(lambda: fd.dropout(x, p, training)),
                            outcome(lambda: nn.functional.dropout(x, p, training)), f"dropout(training={training})")
    assert_same_outcome(module_outcome(fd.FusedDropout, p, x), module_outcome(nn.Dropout, p, x), "FusedDropout")
    for call in (lambda: fd.bias_relu_dropout(x, None, p), lambda: fd.dropout_add(x, x, p),
                 lambda: fd.FusedBiasReLUDropout(6, p), lambda: fd.FusedDropoutAdd(p)):
        assert_same_outcome(outcome(call), torch_f, "the other ops")
    if meaning is not None:  # accepted: it must mean exactly `meaning`, never a silently different value
        expected = fd.dropout(x, meaning, seed=5)
        assert torch.equal(fd.dropout(x, p, seed=5), expected)
        module = fd.FusedDropout(p)
        torch.manual_seed(3)
        y = module(x)
        torch.manual_seed(3)
        assert torch.equal(y, fd.FusedDropout(meaning)(x))
        assert torch.equal(fd.bias_relu_dropout(x, None, p, seed=5), fd.bias_relu_dropout(x, None, meaning, seed=5))
        assert torch.equal(fd.dropout_add(x, x, p, seed=5), fd.dropout_add(x, x, meaning, seed=5))
        assert fd.FusedDropoutAdd(p).p == meaning


@pytest.mark.parametrize("case", STRICTER, ids=lambda case: case[0])
def test_p_where_this_api_is_stricter_than_torch(case):
    _, p = case
    x = torch.randn(4, 6)
    with pytest.raises(TypeError, match=P_NAMED):
        fd.dropout(x, p)
    with pytest.raises(TypeError, match=P_NAMED):
        fd.dropout(x, p, training=False)
    with pytest.raises(TypeError, match=P_NAMED):
        fd.FusedDropout(p)(x)


def test_a_tensor_p_is_read_at_every_call_like_nn_dropout():
    """nn.Dropout keeps the tensor and reads it in forward; so must FusedDropout (no stale copy)."""
    p = torch.tensor(0.25)
    module = fd.FusedDropout(p)
    assert module.p is p and repr(module) == repr(nn.Dropout(p)).replace("Dropout", "FusedDropout")
    x = torch.randn(64, 64)
    p.fill_(1.0)
    assert torch.equal(module(x), torch.zeros_like(x))


# ---- 3. training / inplace: numpy bools are bools ---------------------------------------------------------------

needs_numpy = pytest.mark.skipif(np is None, reason="needs numpy")


@needs_numpy
@pytest.mark.parametrize("value", [True, False])
def test_numpy_bool_flags_are_bools(value):
    x = torch.randn(8, 8)
    expected = fd.dropout(x.clone(), 0.5, value, value, seed=2)
    assert torch.equal(fd.dropout(x.clone(), 0.5, np.bool_(value), np.bool_(value), seed=2), expected)
    assert torch.equal(fd.bias_relu_dropout(x, None, 0.5, np.bool_(value), seed=2),
                       fd.bias_relu_dropout(x, None, 0.5, value, seed=2))
    assert torch.equal(fd.dropout_add(x, x, 0.5, np.bool_(value), seed=2), fd.dropout_add(x, x, 0.5, value, seed=2))
    module = fd.FusedDropout(0.5, inplace=np.bool_(value))
    torch.manual_seed(0)
    got = module(x.clone())
    torch.manual_seed(0)
    assert torch.equal(got, fd.FusedDropout(0.5, inplace=value)(x.clone()))


BAD_FLAGS = ["yes", "", None, 1.0, 0.0, torch.tensor(True), [True]]


@pytest.mark.parametrize("value", BAD_FLAGS, ids=repr)
def test_flags_that_are_not_bools_are_rejected_by_name(value):
    x = torch.randn(4, 6)
    copy = x.clone()
    with pytest.raises(TypeError, match="training must be a bool"):
        fd.dropout(x, 0.5, training=value)
    with pytest.raises(TypeError, match="inplace must be a bool"):
        fd.dropout(x, 0.5, inplace=value)
    with pytest.raises(TypeError, match="training must be a bool"):
        fd.bias_relu_dropout(x, None, 0.5, training=value)
    with pytest.raises(TypeError, match="training must be a bool"):
        fd.dropout_add(x, x, 0.5, training=value)
    assert torch.equal(x, copy)


def test_flags_and_p_without_numpy(monkeypatch):
    """numpy is optional: with it unimportable, validation must neither import it nor fail."""
    monkeypatch.setitem(sys.modules, "numpy", None)  # `import numpy` now raises ImportError
    x = torch.randn(4, 6)
    assert torch.equal(fd.dropout(x, 0.5, True, seed=1), fd.dropout(x, torch.tensor(0.5), 1, seed=1))
    with pytest.raises(TypeError, match="training"):
        fd.dropout(x, 0.5, training="yes")
    with pytest.raises(TypeError, match=P_NAMED):
        fd.dropout(x, "0.5")


@needs_numpy
def test_a_numpy_bool_where_a_number_is_needed_is_named_as_numpy():
    """numpy 2 names np.bool_ plain "bool": "seed must be an int, got bool" would read as a contradiction."""
    x = torch.randn(4, 6)
    with pytest.raises(TypeError, match=r"p must be a real number in \[0, 1\], got numpy\.bool"):
        fd.dropout(x, np.bool_(True))
    with pytest.raises(TypeError, match=r"seed must be an int, got numpy\.bool"):
        fd.dropout(x, 0.5, seed=np.bool_(True))
    with pytest.raises(TypeError, match=r"training must be a bool, got numpy\.float64"):
        fd.dropout(x, 0.5, training=np.float64(1.0))


# ---- 4. layouts: only strided (dense) tensors --------------------------------------------------------------------

NON_STRIDED = {
    "sparse COO": lambda dense: dense.to_sparse(),
    "sparse CSR": lambda dense: dense.to_sparse_csr(),
    "sparse CSC": lambda dense: dense.to_sparse_csc(),
    "sparse BSR": lambda dense: dense.to_sparse_bsr((2, 2)),
    "nested": lambda dense: torch.nested.nested_tensor([dense, dense[:1]]),
    "nested jagged": lambda dense: torch.nested.nested_tensor([dense, dense[:1]], layout=torch.jagged),
    "mkldnn": lambda dense: dense.to_mkldnn(),
}


def non_strided(dense, kinds=NON_STRIDED):
    """(kind, tensor) for every non-strided form of a 2-d `dense` that torch can build on the CPU."""
    forms = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sparse CSR and nested tensors are "beta" and warn about it
        for kind in kinds:
            if kind != "mkldnn" or torch.backends.mkldnn.is_available():
                forms.append((kind, NON_STRIDED[kind](dense)))
    return forms


LAYOUT_MESSAGE = "must be a dense tensor with the strided layout"


@pytest.mark.parametrize("kind", NON_STRIDED)
def test_non_strided_x_is_refused_by_name(kind):
    x_dense = torch.randn(4, 6)
    forms = non_strided(x_dense, [kind])
    if not forms:
        pytest.skip("mkldnn is not available")
    [(what, x)] = forms
    for call in (lambda: fd.dropout(x, 0.5), lambda: fd.dropout(x, 0.5, training=False),
                 lambda: fd.dropout(x, 0.0), lambda: fd.dropout(x, 0.5, inplace=True),
                 lambda: fd.bias_relu_dropout(x, None, 0.5), lambda: fd.dropout_add(x, x_dense, 0.5),
                 lambda: fd.FusedDropout(0.5)(x)):
        with pytest.raises(TypeError, match=f"x {LAYOUT_MESSAGE}") as error:
            call()
        assert "got" in str(error.value), what


def test_non_strided_bias_and_residual_are_refused_by_name():
    x = torch.randn(4, 6)
    copy = x.clone()
    sparse = ["sparse COO", "sparse CSR", "sparse CSC", "sparse BSR"]
    for _, bias in non_strided(torch.randn(2, 6), sparse) + [("sparse COO 1-d", torch.randn(6).to_sparse())]:
        for training in (True, False):
            with pytest.raises(TypeError, match=f"bias {LAYOUT_MESSAGE}"):
                fd.bias_relu_dropout(x, bias, 0.5, training)
            with pytest.raises(TypeError, match=f"bias {LAYOUT_MESSAGE}"):
                fd.dropout_add(x, x.clone(), 0.5, training, bias=bias)
    for _, residual in non_strided(torch.randn(4, 6)):
        for training in (True, False):
            with pytest.raises(TypeError, match=f"residual {LAYOUT_MESSAGE}"):
                fd.dropout_add(x, residual, 0.5, training)
            with pytest.raises(TypeError, match=f"residual {LAYOUT_MESSAGE}"):
                fd.FusedDropoutAdd(0.5)(x, residual)
    assert torch.equal(x, copy)


# ---- 5. other hostile arguments ------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [10**400, -(10**400), 2, -1], ids=["huge int", "huge negative int", "2", "-1"])
def test_an_int_p_out_of_range_is_a_value_error_naming_p(p):
    """torch says ValueError for any int out of [0, 1]; float(10**400) would raise an OverflowError naming nothing."""
    x = torch.randn(4, 6)
    with pytest.raises(ValueError):
        nn.functional.dropout(x, p)
    for call in (lambda: fd.dropout(x, p), lambda: fd.FusedDropout(p), lambda: fd.dropout_add(x, x, p),
                 lambda: fd.FusedBiasReLUDropout(6, p)):
        with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
            call()


@pytest.mark.parametrize("name", ["seed", "offset"])
def test_a_bool_tensor_is_not_an_int(name):
    """Tensor.__index__ turns tensor(True) into 1: a bool tensor slipped through where a bool is refused."""
    x = torch.randn(4, 6)
    with pytest.raises(TypeError, match=f"{name} must be an int, got a tensor of dtype torch.bool"):
        fd.dropout(x, 0.5, **{name: torch.tensor(True)})
    with pytest.raises(TypeError, match=f"{name} must be an int, got bool"):
        fd.dropout(x, 0.5, **{name: True})


@needs_numpy
@pytest.mark.parametrize("seed", [7, 2**64 - 1, -(2**63), 0])
def test_numpy_integers_are_ints_for_seed_and_offset(seed):
    x = torch.randn(16, 16)
    expected = fd.dropout(x, 0.5, seed=seed, offset=12)
    numpy_seed = np.uint64(seed) if seed >= 2**63 else np.int64(seed)
    assert torch.equal(fd.dropout(x, 0.5, seed=numpy_seed, offset=np.int64(12)), expected)
    assert torch.equal(fd.dropout(x, 0.5, seed=torch.tensor(seed) if seed < 2**63 else seed, offset=torch.tensor(12)),
                       expected)
    assert torch.equal(fd.dropout_mask(x.shape, 0.5, numpy_seed, offset=np.int64(12)), expected != 0)


@pytest.mark.parametrize("p", [0, 1, 0.0, 1.0])
def test_an_int_p_of_0_or_1_is_the_float(p):
    x = torch.randn(8, 8)
    assert fd.dropout(x, p) is x if p == 0 else torch.equal(fd.dropout(x, p), torch.zeros_like(x))
    assert torch.equal(fd.dropout_add(x, 2 * x, p), 2 * x + x if p == 0 else 2 * x)
    assert torch.equal(fd.bias_relu_dropout(x, None, p), torch.relu(x) if p == 0 else torch.zeros_like(x))
    assert torch.equal(nn.functional.dropout(x, p), x if p == 0 else torch.zeros_like(x))


def test_tensor_subclass_bias_and_residual_give_the_plain_tensor_result():
    x, residual, bias = torch.randn(4, 6), torch.randn(4, 6), torch.randn(6)
    expected = fd.dropout_add(x, residual, 0.5, bias=bias, seed=9)
    got = fd.dropout_add(x, residual.as_subclass(TensorSubclass), 0.5, bias=nn.Parameter(bias.clone()), seed=9)
    assert torch.equal(got.as_subclass(torch.Tensor), expected)
    got = fd.bias_relu_dropout(x.as_subclass(TensorSubclass), bias.as_subclass(TensorSubclass), 0.5, seed=9)
    assert torch.equal(got.as_subclass(torch.Tensor), fd.bias_relu_dropout(x, bias, 0.5, seed=9))


def test_a_negative_view_is_read_with_its_sign():
    """A tensor with the negative bit set (torch._neg_view) stores x and means -x: the kernels must honour the bit."""
    x, bias = torch.randn(4, 6), torch.randn(6)
    assert torch.equal(fd.dropout(torch._neg_view(x), 0.5, seed=1), fd.dropout(-x, 0.5, seed=1))
    assert torch.equal(fd.bias_relu_dropout(x, torch._neg_view(bias), 0.5, seed=1),
                       fd.bias_relu_dropout(x, -bias, 0.5, seed=1))
    assert torch.equal(fd.dropout_add(x, torch._neg_view(x), 0.5, seed=1), fd.dropout_add(x, -x, 0.5, seed=1))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_a_sparse_incoming_gradient_gives_the_dense_gradient(backend):
    x = make_input((4, 6), requires_grad=True)
    bias = make_input((6,), seed=1, requires_grad=True)
    grad = make_input((4, 6), seed=2) * (torch.rand(4, 6, generator=torch.Generator().manual_seed(3)) > 0.5)
    results = []
    for g in (grad, grad.to_sparse()):
        y = fd.bias_relu_dropout(x, bias, 0.4, seed=7, backend=backend)
        results.append(torch.autograd.grad(y, (x, bias), g))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
