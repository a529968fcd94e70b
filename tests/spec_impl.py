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


# ---- mask geometry (the spec's "Mask geometry" section) -------------------------------------------------------

def mask_index(local_index, global_shape, shard_offsets, noise_shape):
    """m = sum over d with M_d != 1 of (o_d + i_d) * prod_{e > d} M_e."""
    m = 0
    for d, i in enumerate(local_index):
        if noise_shape[d] != 1:
            row = 1
            for e in range(d + 1, len(noise_shape)):
                row *= noise_shape[e]
            m += (shard_offsets[d] + i) * row
    return m


def local_indices(shape):
    """Every local multi-index of `shape`, in row-major order."""
    if not shape:
        yield ()
        return
    for i in range(shape[0]):
        for rest in local_indices(shape[1:]):
            yield (i, *rest)


def geometric_mask(shape, seed, offset, p, noise_shape=None, global_shape=None, shard_offsets=None):
    """The flat keep-mask of a local tensor of `shape` under the geometry (defaults: G = shape, o = 0, M = G)."""
    global_shape = tuple(shape) if global_shape is None else tuple(global_shape)
    shard_offsets = (0,) * len(shape) if shard_offsets is None else tuple(shard_offsets)
    noise_shape = global_shape if noise_shape is None else tuple(noise_shape)
    return [keep(mask_index(i, global_shape, shard_offsets, noise_shape), seed, offset, p)
            for i in local_indices(tuple(shape))]
