"""The reproduction snippet of docs/mask_spec.md must give the package's masks."""
import doctest
import os
import re

import torch

import fused_dropout as fd
import fused_dropout.functional

DOC = os.path.join(os.path.dirname(__file__), "..", "docs", "mask_spec.md")


def test_spec_snippet_reproduces_dropout_mask():
    source = open(DOC).read().split("```python")[1].split("```")[0]
    namespace = {}
    exec(source, namespace)
    seed, offset, p = 2**63 + 99, 2**33 + 1, 0.37
    mask = fd.dropout_mask((257,), p, seed, offset=offset)
    assert [namespace["keep"](i, seed, offset, p) for i in range(257)] == mask.tolist()


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
