"""An independent implementation of the mask specification in plain Python integers, written from the text of
docs/mask_spec.md and sharing no code with the package. Slow: for small tensors only."""

M32 = 0xFFFFFFFF


def philox4x32_10(counter, key):
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for _ in range(10):
        p0 = 0xD2511F53 * c0
        p1 = 0xCD9E8D57 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0) & M32, p1 & M32, ((p0 >> 32) ^ c3 ^ k1) & M32, p0 & M32
        k0 = (k0 + 0x9E3779B9) & M32
        k1 = (k1 + 0xBB67AE85) & M32
    return c0, c1, c2, c3


def word(i, seed, offset):
    """The Philox word that decides element i."""
    s = seed % (1 << 64)
    g = offset + i
    q, w = g >> 2, g & 3
    return philox4x32_10((q & M32, q >> 32, 0, 0), (s & M32, s >> 32))[w]


def keep(i, seed, offset, p):
    return word(i, seed, offset) >= int(p * 2**32)


def mask(numel, seed, offset, p):
    return [keep(i, seed, offset, p) for i in range(numel)]
