"""The reproduction snippet of docs/mask_spec.md must give the package's masks."""
import os

import fused_dropout as fd

DOC = os.path.join(os.path.dirname(__file__), "..", "docs", "mask_spec.md")


def test_spec_snippet_reproduces_dropout_mask():
    source = open(DOC).read().split("```python")[1].split("```")[0]
    namespace = {}
    exec(source, namespace)
    seed, offset, p = 2**63 + 99, 2**33 + 1, 0.37
    mask = fd.dropout_mask((257,), p, seed, offset=offset)
    assert [namespace["keep"](i, seed, offset, p) for i in range(257)] == mask.tolist()
