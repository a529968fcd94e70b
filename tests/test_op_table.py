"""The op table (fused_dropout/op_table.py) and the C++ op list (csrc/op_list.h) declare the same ops with the
same schemas, and every layer is driven from the table."""
import torch

from conftest import OPS
from fused_dropout import backends
from fused_dropout.bench import cases
from fused_dropout.op_table import BACKWARDS
from fused_dropout.ops import FAMILIES


def _schema(qualified_op) -> str:
    schema = str(qualified_op._schema)
    return schema[schema.index("("):]


def test_native_schemas_defined_in_cpp_equal_the_table():
    assert backends.NATIVE_CPU, "the native extension is built in CI"
    native = {name for name in dir(torch.ops.fused_dropout) if not name.startswith(("torch_", "triton_"))}
    native = {name for name in native if name.endswith(("_fwd", "_bwd"))}
    expected = {op.op_name for op in OPS} | {b.op_name for b in BACKWARDS.values()}
    assert native == expected
    for name in expected:
        from_cpp = _schema(getattr(torch.ops.fused_dropout, name).default)
        from_table = _schema(getattr(FAMILIES["torch"], name))
        assert from_cpp == from_table, name


def test_every_family_has_every_op_of_the_table():
    for family in FAMILIES.values():
        assert set(family.forward) == {op.name for op in OPS}
        assert set(family.backward) == set(BACKWARDS)


def test_the_benchmark_covers_every_op():
    assert set(cases.OPS) == {op.name for op in OPS}
