"""The modules go wherever nn.Dropout goes: torch.jit.script (and save/load), torch.jit.trace, torch.export."""
import io

import pytest
import torch
from torch import nn

import fused_dropout as fd
import fused_dropout.modules
from conftest import make_input

# torch 2.13 deprecates TorchScript (torch.jit.script, trace, save, load) but still ships it; models using it exist.
pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning")

requires_native = pytest.mark.skipif(not fd.backends.NATIVE_CPU,
                                     reason="a scripted module calls the native ops: fused_dropout._C is not built")


class Block(nn.Module):
    """A small model holding each module: linear -> bias+relu+dropout -> dropout -> residual add."""

    def __init__(self, features: int = 16, inplace: bool = False):
        super().__init__()
        self.linear = nn.Linear(features, features, bias=False)
        self.act = fd.FusedBiasReLUDropout(features, 0.3)
        self.drop = fd.FusedDropout(0.4, inplace=inplace)
        self.add = fd.FusedDropoutAdd(0.2)
        with torch.no_grad():
            self.act.bias.copy_(make_input((features,), seed=7))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.act(self.linear(x)))
        return self.add(h, x, self.act.bias) + self.add(h, x)


def make_block(**kwargs) -> Block:
    torch.manual_seed(0)
    return Block(**kwargs)


def run_seeded(model, x, seed):
    torch.manual_seed(seed)
    return model(x)


def save_and_load(scripted):
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    return torch.jit.load(buffer)


# ---- torch.jit.script ----------------------------------------------------------------------------------------


@requires_native
def test_scripted_block_drops_the_same_elements_as_eager_and_survives_save_and_load():
    model, x = make_block(), make_input((8, 16))
    scripted = torch.jit.script(model)
    loaded = save_and_load(scripted)
    for seed in range(4):
        eager = run_seeded(model, x, seed)
        assert torch.equal(run_seeded(scripted, x, seed), eager)
        assert torch.equal(run_seeded(loaded, x, seed), eager)
    assert not torch.equal(run_seeded(model, x, 0), run_seeded(model, x, 1))  # the seed matters
    for m in (model, scripted, loaded):
        m.eval()
    eager = model(x)
    assert torch.equal(scripted(x), eager) and torch.equal(loaded(x), eager)
    # eval is deterministic and draws nothing: the global RNG is where it was
    state = torch.get_rng_state()
    scripted(x)
    assert torch.equal(torch.get_rng_state(), state)


@requires_native
@pytest.mark.parametrize("module", [fd.FusedDropout(0.5), fd.FusedBiasReLUDropout(16, 0.5), fd.FusedDropoutAdd(0.5)],
                         ids=["FusedDropout", "FusedBiasReLUDropout", "FusedDropoutAdd"])
def test_each_scripted_module_matches_eager(module):
    x, r = make_input((6, 16)), make_input((6, 16), seed=1)
    args = (x, r) if isinstance(module, fd.FusedDropoutAdd) else (x,)
    scripted = torch.jit.script(module)
    for training in (True, False):
        module.train(training)
        scripted.train(training)
        torch.manual_seed(11)
        eager = module(*args)
        torch.manual_seed(11)
        assert torch.equal(scripted(*args), eager)
    module.train()


@requires_native
def test_scripted_dropout_shortcuts_and_inplace():
    x = make_input((32, 32))
    scripted = torch.jit.script(fd.FusedDropout(0.5, inplace=True))
    scripted.eval()
    assert scripted(x) is x
    scripted.train()
    zero_p = torch.jit.script(fd.FusedDropout(0.0))
    assert torch.equal(zero_p(x), x)

    eager_module = fd.FusedDropout(0.5, inplace=True)
    a, b = x.clone(), x.clone()
    torch.manual_seed(3)
    eager = eager_module(a)
    torch.manual_seed(3)
    out = scripted(b)
    assert out.data_ptr() == b.data_ptr() and torch.equal(b, eager) and torch.equal(a, eager)
    assert not torch.equal(b, x)  # something was dropped, in place


@requires_native
def test_scripted_modules_promote_mixed_dtypes_like_eager():
    x, r = make_input((4, 16), torch.bfloat16), make_input((4, 16), seed=1)
    act = fd.FusedBiasReLUDropout(16, 0.5)  # float32 bias
    add = fd.FusedDropoutAdd(0.5)
    for module, args in ((act, (x,)), (add, (x, r, make_input((16,), torch.float16, seed=2)))):
        scripted = torch.jit.script(module)
        torch.manual_seed(5)
        eager = module(*args)
        torch.manual_seed(5)
        out = scripted(*args)
        assert out.dtype == eager.dtype != torch.bfloat16 and torch.equal(out, eager)


@requires_native
def test_scripted_modules_refuse_non_floating_inputs_like_eager():
    ints = torch.ones(4, 16, dtype=torch.int32)
    floats = make_input((4, 16))
    cases = [(fd.FusedDropout(0.5), (ints,), "x"), (fd.FusedDropout(0.5).eval(), (ints,), "x"),
             (fd.FusedBiasReLUDropout(16), (ints,), "x"), (fd.FusedBiasReLUDropout(16).eval(), (ints,), "x"),
             (fd.FusedDropoutAdd(), (ints, floats), "x"), (fd.FusedDropoutAdd(), (floats, ints), "residual"),
             (fd.FusedDropoutAdd().eval(), (floats, floats, torch.ones(16, dtype=torch.int64)), "bias")]
    for module, args, name in cases:
        with pytest.raises(TypeError, match=f"{name} must be"):
            module(*args)
        with pytest.raises(torch.jit.Error, match=f"{name} must be a float16, bfloat16, float32 or float64 tensor"):
            torch.jit.script(module)(*args)


@requires_native
def test_scripting_replace_dropout_output_of_a_transformer_layer():
    torch.manual_seed(0)
    layer = fd.replace_dropout(nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, dropout=0.1,
                                                          batch_first=True))
    scripted = torch.jit.script(layer)
    x = make_input((2, 5, 16))
    assert torch.equal(run_seeded(scripted, x, 4), run_seeded(layer, x, 4))


def test_scripting_without_the_native_extension_says_so(monkeypatch):
    monkeypatch.setattr(fused_dropout.modules._native, "LOADED", False)
    for module in (fd.FusedDropout(), fd.FusedBiasReLUDropout(4), fd.FusedDropoutAdd()):
        with pytest.raises(RuntimeError, match=r"needs the native extension fused_dropout\._C"):
            torch.jit.script(nn.Sequential(module))


@requires_native
def test_scripting_refuses_a_backend_it_cannot_honour():
    with pytest.raises(RuntimeError, match="backend='torch'"):
        torch.jit.script(fd.FusedDropout(backend="torch"))
    torch.jit.script(fd.FusedDropout(backend="cpu"))


# ---- torch.jit.trace and torch.export ------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # the functional API's argument checks compare shapes
def test_traced_block_in_eval_mode_matches_eager():
    model, x = make_block().eval(), make_input((8, 16))
    traced = torch.jit.trace(model, (x,), check_trace=False)
    other = make_input((8, 16), seed=3)
    assert torch.equal(traced(x), model(x)) and torch.equal(traced(other), model(other))
    assert torch.equal(save_and_load(traced)(other), model(other))


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_exported_block_matches_eager(training):
    model, x = make_block().train(training), make_input((8, 16))
    exported = torch.export.export(model, (x,)).module()
    for seed in range(3):
        assert torch.equal(run_seeded(exported, x, seed), run_seeded(model, x, seed))
    if training:
        assert not torch.equal(run_seeded(exported, x, 0), run_seeded(exported, x, 1))


@pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
def test_compiled_block_is_one_graph_and_matches_eager(training):
    """The scripting and ONNX branches of forward are constants to dynamo: no graph break, the same mask."""
    model, x = make_block().train(training), make_input((8, 16))
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    for seed in range(2):
        assert torch.equal(run_seeded(compiled, x, seed), run_seeded(model, x, seed))


# ---- ONNX (eval mode) ----------------------------------------------------------------------------------------


def run_onnx(model_proto, args):
    """The model's outputs for `args`: with onnxruntime when installed, else with onnx's reference evaluator."""
    feeds = {i.name: a.numpy() for i, a in zip(model_proto.graph.input, args)}
    try:
        import onnxruntime
    except ImportError:
        from onnx.reference import ReferenceEvaluator

        return [torch.from_numpy(out) for out in ReferenceEvaluator(model_proto).run(None, feeds)]
    session = onnxruntime.InferenceSession(model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return [torch.from_numpy(out) for out in session.run(None, feeds)]


def onnx_export(model, args):
    pytest.importorskip("onnx", reason="ONNX export tests need the onnx package (pip install onnx)")
    pytest.importorskip("onnxscript", reason="torch.onnx.export(dynamo=True) needs onnxscript (pip install onnxscript)")
    return torch.onnx.export(model, args, dynamo=True, verbose=False).model_proto


class AddWithBias(nn.Module):
    def __init__(self):
        super().__init__()
        self.add = fd.FusedDropoutAdd(0.5)

    def forward(self, x, residual, bias):
        return self.add(x, residual, bias)


ONNX_CASES = {  # model, number of inputs, the op types its eval-mode graph must consist of
    "FusedDropout": (lambda: fd.FusedDropout(0.5), 1, {"Identity"}),
    "FusedBiasReLUDropout": (lambda: fd.FusedBiasReLUDropout(16, 0.5), 1, {"Add", "Relu"}),
    "FusedDropoutAdd": (lambda: fd.FusedDropoutAdd(0.5), 2, {"Add"}),
    "FusedDropoutAdd-bias": (AddWithBias, 3, {"Add"}),
    "Block": (make_block, 1, {"Gemm", "MatMul", "Add", "Relu", "Transpose"}),
}


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")  # raised inside torch.onnx's export (torch 2.13)
@pytest.mark.parametrize("case", list(ONNX_CASES))
def test_onnx_export_in_eval_mode_computes_the_eval_output_with_standard_ops(case):
    make, n_inputs, op_types = ONNX_CASES[case]
    model = make().eval()
    shapes = [(8, 16), (8, 16), (16,)]
    args = tuple(make_input(shapes[i], seed=i) for i in range(n_inputs))
    with torch.no_grad():
        proto = onnx_export(model, args)
        expected = model(*args)
    assert {node.op_type for node in proto.graph.node} <= op_types
    assert all(node.domain in ("", "ai.onnx") for node in proto.graph.node)
    (out,) = run_onnx(proto, args)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)


def test_eager_eval_keeps_running_the_fused_op():
    """The ONNX branch is taken only during an ONNX export: an ordinary eval-mode call runs the fused op."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Record(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(func._opname)
            return func(*args, **(kwargs or {}))

    x, r, b = make_input((8, 16)), make_input((8, 16), seed=1), make_input((16,), seed=2)
    for module, args, fused in ((fd.FusedBiasReLUDropout(16).eval(), (x,), "bias_relu_dropout_fwd"),
                                (fd.FusedDropoutAdd().eval(), (x, r, b), "dropout_add_fwd")):
        with Record() as record:
            module(*args)
        assert fused in record.ops and not {"relu", "add"} & set(record.ops), record.ops
