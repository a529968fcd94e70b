"""Every Triton kernel variant the launcher can pick compiles for real GPUs, sm_90 and sm_80, on any machine:
triton.compile with a GPUTarget needs no GPU. The interpreter runs kernels as Python and accepts code the compiler
rejects (a float64/float32 return type clash, say), so this is where such errors surface.

What is compiled: launch.specializations() lists every variant the launcher can pick (dtype, activation,
bias/residual flags, backward kind, bias_grad, mask runs, tile; column-sum block). A compile costs about 2.5 s of
CPU (32 elements per thread, a Philox unrolled over 8 groups), too slow to compile them all for two archs in CI.
For sm_90 (the H100) this compiles
  - every flag/dtype combination of each kernel at one tile of its tile class (the middle one of its tiles: flat
    views have one tile; column views several), and
  - every tile shape of each kernel at the first flag combination that uses it,
about 200 variants. Integer scalars compile as unspecialised i64 (threshold and scale_bits as their annotated
types: the kernels never specialise them on p); Triton also specialises the others by value (i32, a constexpr 1,
multiples of 16): the i32 and constexpr-1 forms are compiled once per kernel and tile class.
For sm_80 it compiles a cover of that list (sm80_jobs): every kernel in every dtype with every activation and
every backward kind, and every value of every flag, tile size, warp count and scalar form at least once, about 70
variants. What differs between the two archs is the lowering to LLVM and PTX (conversions, instructions), not the
front end or the tiles' layouts, so the cover reaches every kind of lowered code in each dtype.
The jobs run in two child processes side by side (one core each): 338 s of wall time on the idle 2-core VM.

The suite runs with TRITON_INTERPRET=1, which turns @triton.jit into the interpreter at import time, so the
compiles run in child processes without it (this file is also the children's script).
"""
import json
import os
import subprocess
import sys
import time
from collections import defaultdict

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TILE_CONSTEXPRS = ("BR", "BC")
# rows is 1 in every flat view, row_len for a bias of length 1, row_blocks whenever one tile holds every row.
# threshold and scale_bits are typed (annotated) and never specialised on their values.
SCALARS_THAT_CAN_BE_ONE = ("rows", "row_len", "row_blocks")
TORCH_TO_TRITON = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32", torch.float64: "fp64"}

try:
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from fused_dropout.triton_backend import launch
except ImportError:
    launch = None

pytestmark = pytest.mark.skipif(launch is None, reason="triton is not installed")


# ---- what to compile: shared by the test (for its parameters) and the child (which compiles) ----------------


def _kernel_name(spec) -> str:
    return spec.kernel.__name__


def _flags(spec) -> tuple:
    """Everything that selects the variant except its tile."""
    rest = tuple(sorted((k, v) for k, v in spec.constexprs.items() if k not in TILE_CONSTEXPRS))
    return _kernel_name(spec), str(spec.dtype), rest


def _tile(spec) -> tuple:
    return _kernel_name(spec), spec.constexprs.get("BR", 1), spec.constexprs["BC"], spec.num_warps


# The launcher's INTERPRETER constexpr follows TRITON_INTERPRET: True in the suite's process, False in the
# compiling child, which compiles the GPU variants. Job ids leave it out so both name the same jobs.
PROCESS_CONSTEXPRS = ("INTERPRETER",)


def job_id(spec, scalars: str) -> str:
    constexprs = ",".join(f"{k}={v}" for k, v in sorted(spec.constexprs.items())
                          if v is not None and k not in PROCESS_CONSTEXPRS)
    return f"{_kernel_name(spec)}[{TORCH_TO_TRITON[spec.dtype]},{constexprs},warps={spec.num_warps},{scalars}]"


def jobs() -> dict:
    """{job id: (specialization, scalar form)}: see the module docstring."""
    specs = launch.specializations()
    tiles_of_flags = defaultdict(list)
    for spec in specs:
        tiles_of_flags[_flags(spec)].append(spec)
    chosen = [group[len(group) // 2] for group in tiles_of_flags.values()]
    first_with_tile = {}
    for spec in specs:
        first_with_tile.setdefault(_tile(spec), spec)
    chosen += first_with_tile.values()
    # Scalar forms: once per kernel and tile class (flat views have one tile, column views several).
    first_of_class = {}
    for group in tiles_of_flags.values():
        first_of_class.setdefault((_kernel_name(group[0]), len(group) == 1), group[len(group) // 2])
    selected = {job_id(spec, "i64"): (spec, "i64") for spec in chosen}
    for spec in first_of_class.values():
        for scalars in ("i32", "ones"):
            selected[job_id(spec, scalars)] = (spec, scalars)
    return selected


def _pointer_type(name: str, dtype: torch.dtype) -> str:
    if name == "seed_ptr":
        return "*i64"  # the seed
    if name == "partial_ptr":
        return "*" + TORCH_TO_TRITON[torch.float64 if dtype == torch.float64 else torch.float32]  # compute type
    return "*" + TORCH_TO_TRITON[dtype]


def _source(spec, scalars: str):
    """The ASTSource the JIT builds for a launch of `spec`: pointers 16-byte aligned (as torch allocates them),
    integer scalars in the given form."""
    signature, constexprs, attrs = {}, dict(spec.constexprs), {}
    for index, name in enumerate(spec.kernel.arg_names):
        param = spec.kernel.params[index]
        if name in constexprs or param.is_constexpr:
            signature[name] = "constexpr"
        elif param.annotation_type:  # a typed scalar: the JIT passes it as that type whatever its value
            signature[name] = param.annotation_type
        elif name.endswith("_ptr"):
            signature[name] = _pointer_type(name, spec.dtype)
            attrs[(index,)] = [["tt.divisibility", 16]]
        elif scalars == "ones" and name in SCALARS_THAT_CAN_BE_ONE:
            signature[name] = "constexpr"
            constexprs[name] = 1
        elif scalars == "ones":
            signature[name] = "i32"
        else:
            signature[name] = scalars
    return ASTSource(fn=spec.kernel, signature=signature, constexprs=constexprs, attrs=attrs)


def sm80_jobs() -> list:
    """The sm_80 job ids: a greedy cover of jobs() in which every kernel appears in every dtype with every
    activation and backward kind, and with every value of every other constexpr (tile sizes included), warp
    count and scalar form (see the module docstring)."""
    def features(spec, scalars):
        kernel, dtype = _kernel_name(spec), str(spec.dtype)
        found = {(kernel, dtype, scalars), (kernel, scalars, "warps", spec.num_warps),
                 (kernel, dtype, "ACTIVATION", spec.constexprs.get("ACTIVATION")),
                 (kernel, dtype, "KIND", spec.constexprs.get("KIND"))}
        return found | {(kernel, scalars, key, value) for key, value in spec.constexprs.items()
                        if key not in PROCESS_CONSTEXPRS}

    offered = {name: features(spec, scalars) for name, (spec, scalars) in sorted(jobs().items())}
    missing = set().union(*offered.values())
    chosen = []
    while missing:
        best = max(offered, key=lambda name: len(offered[name] & missing))
        chosen.append(best)
        missing -= offered[best]
    return sorted(chosen)


def arch_jobs() -> list:
    """[(arch, job id)]: every job for sm_90, the cover for sm_80."""
    return [(90, name) for name in sorted(jobs())] + [(80, name) for name in sm80_jobs()]


def compile_jobs(pairs: list) -> dict:
    """{"<arch>:<job id>": {"seconds": ..., "error": None or the compiler's message}} for [(arch, job id)]."""
    selected = jobs()
    results = {}
    for arch, name in pairs:
        spec, scalars = selected[name]
        start = time.perf_counter()
        try:
            triton.compile(_source(spec, scalars), target=GPUTarget("cuda", arch, 32),
                           options={"num_warps": spec.num_warps, **launch.COMPILE_OPTIONS})
            error = None
        except Exception as exc:  # noqa: BLE001 - every compiler error is a result to report
            error = f"{type(exc).__name__}: {exc}"[-3000:]
        results[f"{arch}:{name}"] = {"seconds": time.perf_counter() - start, "error": error}
    return results


# ---- the tests --------------------------------------------------------------------------------------------


CHILDREN = 2  # the machine's cores


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Compiles every (arch, job) in CHILDREN child processes side by side (every other job each, so both
    finish together), without TRITON_INTERPRET, in a fresh cache so every variant really compiles."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path_factory.mktemp("triton_cache"))
    env["PYTHONPATH"] = os.pathsep.join([ROOT, env.get("PYTHONPATH", "")])
    start = time.perf_counter()
    pairs = arch_jobs()
    children = []
    for index in range(CHILDREN):
        child = subprocess.Popen([sys.executable, os.path.abspath(__file__)], env=env, cwd=ROOT, text=True,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        children.append((child, json.dumps(pairs[index::CHILDREN])))
    results = {}
    for child, request in children:  # communicate() reads both pipes while it waits: no child blocks on a full one
        stdout, stderr = child.communicate(request)
        assert child.returncode == 0, stderr[-4000:]
        results.update(json.loads(stdout.splitlines()[-1]))
    seconds = [result["seconds"] for result in results.values()]
    print(f"{len(seconds)} compiles, {sum(seconds):.1f} s of CPU, slowest {max(seconds):.1f} s, "
          f"wall time {time.perf_counter() - start:.1f} s")
    return results


ARCH_JOB_IDS = [pytest.param(arch, name, id=f"{name}-sm_{arch}") for arch, name in arch_jobs()] \
    if launch is not None else []


def test_every_kernel_and_flag_is_compiled():
    # The selection covers every kernel, dtype, activation, backward kind and tile the launcher can pick.
    specs = launch.specializations()
    chosen = [spec for spec, _ in jobs().values()]
    assert {_flags(spec) for spec in chosen} == {_flags(spec) for spec in specs}
    assert {_tile(spec) for spec in chosen} == {_tile(spec) for spec in specs}
    assert {spec.constexprs.get("ACTIVATION") for spec in chosen} >= set(launch.ACTIVATIONS)
    kinds = {launch._backward_specialization(kind, False, False, torch.float32, launch._tile(1, False, 4))
             .constexprs["KIND"] for kind in launch.BACKWARD_KINDS}
    assert {spec.constexprs.get("KIND") for spec in chosen} >= kinds == {"mask", "relu_output", "input"}


def test_sm80_cover_reaches_every_dtype_activation_kind_and_flag_value():
    everything, cover = jobs(), sm80_jobs()
    assert set(cover) < set(everything)

    def seen(names, part):
        return {part(*everything[name]) for name in names}

    for part in (lambda spec, scalars: (_kernel_name(spec), str(spec.dtype), scalars),
                 lambda spec, scalars: (_kernel_name(spec), str(spec.dtype), spec.constexprs.get("ACTIVATION")),
                 lambda spec, scalars: (_kernel_name(spec), str(spec.dtype), spec.constexprs.get("KIND")),
                 lambda spec, scalars: (_kernel_name(spec), spec.num_warps)):
        assert seen(cover, part) == seen(everything, part)
    for key in ("HAS_BIAS", "HAS_RESIDUAL", "BIAS_GRAD", "RUN_COUNT", "ACC_F64", "BR", "BC"):
        part = lambda spec, scalars: (_kernel_name(spec), spec.constexprs.get(key))  # noqa: E731
        assert seen(cover, part) == seen(everything, part), key


@pytest.mark.parametrize("arch, job", ARCH_JOB_IDS)
def test_compiles(compiled, arch, job):
    assert compiled[f"{arch}:{job}"]["error"] is None, compiled[f"{arch}:{job}"]["error"]


if __name__ == "__main__":  # a child process: compile the [(arch, job id)] read from stdin, print results as JSON
    requested = json.loads(sys.stdin.read())
    sys.stdout = sys.stderr  # compiler chatter must not mix with the JSON line
    outcome = json.dumps(compile_jobs(requested))
    sys.stdout = sys.__stdout__
    print(outcome)
