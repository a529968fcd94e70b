"""The reproduction snippet of docs/mask_spec.md must give the package's masks."""
import doctest
import os
import re

import torch

import fused_dropout as fd
import fused_dropout.functional
from fused_dropout.geometry import mask_geometry, mask_indices

DOC = os.path.join(os.path.dirname(__file__), "..", "docs", "mask_spec.md")


def spec_snippets() -> dict:
    """The names the Python snippets of docs/mask_spec.md define, run in order in one namespace."""
    namespace = {}
    for snippet in re.findall(r"```python\n(.*?)```", open(DOC).read(), re.DOTALL):
        exec(compile(snippet, "mask_spec.md", "exec"), namespace)
    return namespace


def test_spec_snippet_reproduces_dropout_mask():
    namespace = spec_snippets()
    seed, offset, p = 2**63 + 99, 2**33 + 1, 0.37
    mask = fd.dropout_mask((257,), p, seed, offset=offset)
    assert [namespace["keep"](i, seed, offset, p) for i in range(257)] == mask.tolist()


def test_spec_snippet_gives_the_mask_index_of_the_geometry():
    mask_index = spec_snippets()["mask_index"]
    shape, noise, sizes, starts = (2, 3, 4), (5, 1, 4), (5, 6, 4), (3, 2, 0)
    geometry = mask_geometry(shape, noise, sizes, starts)
    expected = [mask_index((a, b, c), sizes, starts, noise) for a in range(2) for b in range(3) for c in range(4)]
    assert mask_indices(geometry).tolist() == expected


README = os.path.join(os.path.dirname(__file__), "..", "README.md")


def test_every_readme_python_snippet_runs():
    snippets = re.findall(r"```python\n(.*?)```", open(README).read(), re.DOTALL)
    assert snippets
    for snippet in snippets:
        exec(compile(snippet, "README.md", "exec"), {})


def test_the_functional_api_examples_are_true():
    result = doctest.testmod(fused_dropout.functional, extraglobs={"torch": torch, "fused_dropout": fd},
                             optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 4 and result.failed == 0
