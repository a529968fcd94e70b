"""The model of one compiled kernel: its hot path per element split by pipe, bytes per element, the busiest pipe's
utilisation at H100 copy bandwidth, the modeled fraction of copy bandwidth, occupancy, and the budget verdict.

time per element per SM (clocks) = max(bytes / 11.1, instructions_p / rate_p for every pipe p);
utilisation of pipe p at copy bandwidth = (instructions_p / rate_p) / (bytes / 11.1);
modeled fraction of copy bandwidth = (bytes / 11.1) / time.
"""
from __future__ import annotations

import math

from . import hardware as hw
from .hot_path import ControlFlow, philox_requirement
from .kernel_id import ACC_BYTES, ELEMENT_BYTES, KernelId
from .occupancy import blocks_per_sm
from .pipes import PIPE_RATES, REPORTED_PIPES

VECTOR_BYTES = 16


def _best_per_element(candidates):
    """The (path, elements) of least instructions per element among (path or None, elements) candidates."""
    found = [(path, elements) for path, elements in candidates if path is not None and elements > 0]
    return min(found, key=lambda item: item[0].instructions / item[1], default=(None, 0))


def hot_path(kernel: KernelId, flow: ControlFlow) -> tuple:
    """(HotPath, elements per pass) of the kernel's steady-state aligned hot path (see hot_path.py), or (None, 0)."""
    if kernel.kind == "column_sum":  # the reduction loop over row blocks: cheapest per element over unrollings
        candidates = []
        for k in range(1, flow.total("load") + 1):
            path = flow.cycle("load", {"load": k})
            candidates.append((path, path.resources["load_bytes"] // ACC_BYTES[kernel.dtype] if path else 0))
        return _best_per_element(candidates)
    if kernel.backend == "triton":  # one tile per program: entry -> exit, every store, its Philox calls
        elements = kernel.elements_per_thread
        required = {"store": flow.total("store")}
        if kernel.keep_from_rng:
            required["philox_multiply"] = philox_requirement(elements)
        return flow.path(required), elements
    # CUDA grid-stride / row loops: one iteration of the aligned full-chunk path
    per_store = VECTOR_BYTES // ELEMENT_BYTES[kernel.dtype]
    candidates = []
    for k in range(1, flow.total("vector_store") + 1):
        required = {"vector_store": k, "vector_load": k * kernel.streamed_inputs}
        if kernel.keep_from_rng:
            required["philox_multiply"] = philox_requirement(k * per_store)
        path = flow.cycle("vector_store", required)
        elements = path.resources["vector_store"] * per_store if path else 0
        # The cycle may hold more stores than asked for (a chunk of two 128-bit stores): it counts only when it
        # also holds the loads and Philox calls of all the elements it stores.
        if path is not None and (path.resources["vector_load"] < kernel.streamed_inputs * elements // per_store or (
                kernel.keep_from_rng and path.resources["philox_multiply"] < philox_requirement(elements))):
            continue
        candidates.append((path, elements))
    return _best_per_element(candidates)


def lane_use(kernel: KernelId, row_len: int) -> float:
    """Fraction of a Triton tile's lanes that hold elements at this row length (a 1 x 4096 tile over 3072
    columns uses 3/4 of them). 1 for flat views and for CUDA."""
    if kernel.backend != "triton" or not row_len:
        return 1.0
    columns = int(kernel.tile.split("x")[1].split("/")[0])
    return row_len / (math.ceil(row_len / columns) * columns)


def model_row(kernel: KernelId, arch: int, flow: ControlFlow | None, registers: int, spills: int, shared: int,
              row_len: int = 0, error: str | None = None) -> dict:
    """One CSV row of the model for a kernel at one arch (and, for Triton bias tiles, one row length)."""
    row = dict(backend=kernel.backend, arch=f"sm_{arch}", kind=kernel.kind, op=kernel.op, bias=kernel.bias,
               dtype=kernel.dtype, tile=kernel.tile, row_len=row_len or "", kernel=kernel.name, error=error or "",
               registers=registers, spills=spills, shared_bytes=shared, threads=kernel.threads,
               bytes_per_element=kernel.bytes_per_element, budgeted=kernel.budgeted,
               known_compute_bound=kernel.known_compute_bound)
    if error is not None or flow is None:
        row["within_budget"] = not kernel.budgeted
        row["budget_failures"] = "does not compile" if error else "no code"
        return row
    fit = blocks_per_sm(registers, shared, kernel.threads)
    row.update(blocks_per_sm_fit=fit, blocks_per_sm_launched=kernel.launched_blocks_per_sm)
    path, elements = hot_path(kernel, flow)
    if path is None:
        row.update(within_budget=not kernel.budgeted, budget_failures="no hot path found")
        return row
    use = lane_use(kernel, row_len)
    per_element = {pipe: path.pipes[pipe] / (elements * use) for pipe in REPORTED_PIPES}
    per_element["issue"] = path.instructions / (elements * use)
    memory_clocks = kernel.bytes_per_element / hw.COPY_BYTES_PER_SM_CLOCK
    utilisation = {pipe: per_element[pipe] / rate / memory_clocks for pipe, rate in PIPE_RATES.items()}
    busiest = max(utilisation, key=utilisation.get)
    time = max(memory_clocks, *(per_element[pipe] / rate for pipe, rate in PIPE_RATES.items()))
    viadd = sum(count for opcode, count in path.opcodes.items() if opcode.split(".")[0] == "VIADD")
    row["hot_path_opcodes"] = {opcode: count / (elements * use) for opcode, count in path.opcodes.most_common()}
    row.update(lane_use=round(use, 4), elements_per_pass=elements, instructions_per_pass=path.instructions,
               **{f"{pipe}_per_element": round(value, 3) for pipe, value in per_element.items()},
               viadd_per_element=round(viadd / (elements * use), 3), busiest_pipe=busiest,
               busiest_utilisation=round(utilisation[busiest], 3),
               modeled_fraction_of_copy_bandwidth=round(memory_clocks / time, 3),
               budget_issue=round(hw.pipe_budget(PIPE_RATES["issue"], kernel.bytes_per_element), 2),
               budget_alu=round(hw.pipe_budget(PIPE_RATES["alu"], kernel.bytes_per_element), 2),
               budget_fma_heavy=round(hw.pipe_budget(PIPE_RATES["fma_heavy"], kernel.bytes_per_element), 2))
    failures = []
    if kernel.budgeted:
        for pipe, value in utilisation.items():
            if value > hw.BUDGET_UTILISATION:
                failures.append(f"{pipe} {per_element[pipe]:.1f}/elt > "
                                f"{hw.pipe_budget(PIPE_RATES[pipe], kernel.bytes_per_element):.1f}")
        if kernel.plain_dropout and per_element["issue"] > hw.PLAIN_DROPOUT_ISSUE_BUDGET:
            failures.append(f"plain dropout issue {per_element['issue']:.1f}/elt > {hw.PLAIN_DROPOUT_ISSUE_BUDGET:.0f}")
        if spills:
            failures.append(f"spills {spills} bytes")
        if kernel.launched_blocks_per_sm.isdigit() and int(kernel.launched_blocks_per_sm) > fit:
            failures.append(f"launches {kernel.launched_blocks_per_sm} blocks/SM, {fit} fit")
    row.update(within_budget=not failures, budget_failures="; ".join(failures))
    return row
