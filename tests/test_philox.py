"""Philox4x32-10 known answers, for the independent implementation and the package's spec module."""
import pytest
import torch

from fused_dropout import spec
from spec_impl import philox4x32_10

# Random123's known-answer vectors for philox4x32_10 (counter, key) -> output.
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter, key, expected", KNOWN_ANSWERS)
def test_independent_implementation_known_answers(counter, key, expected):
    assert philox4x32_10(counter, key) == expected


@pytest.mark.parametrize("counter, key, expected", KNOWN_ANSWERS)
def test_reference_known_answers(counter, key, expected):
    as_tensor = [torch.tensor([v], dtype=torch.int64) for v in (*counter, *key)]
    words = spec.philox4x32_10(*as_tensor)
    assert tuple(int(w) for w in words) == expected


def test_reference_matches_independent_implementation_on_random_counters():
    generator = torch.Generator().manual_seed(7)
    values = torch.randint(0, 2**32, (64, 6), generator=generator, dtype=torch.int64)
    words = torch.stack(spec.philox4x32_10(*values.unbind(1)), dim=1)
    for row, out in zip(values.tolist(), words.tolist()):
        assert tuple(out) == philox4x32_10(tuple(row[:4]), tuple(row[4:]))
