"""Philox-4x32-10 counter-based random numbers, the numpy reference for graphc's random ops.

Philox4x32-R is the counter-based generator of Salmon, Moraes, Dror and Shaw, "Parallel
random numbers: as easy as 1, 2, 3" (SC 2011), as shipped in Random123: a bijection of a
128-bit counter (four uint32 words) under a 64-bit key (two uint32 words).  One round is::

    hi0:lo0 = 0xD2511F53 * c0        (64-bit product of two uint32)
    hi1:lo1 = 0xCD9E8D57 * c2
    c = (hi1 ^ c1 ^ k0,  lo1,  hi0 ^ c3 ^ k1,  lo0)

and between rounds the key takes a Weyl step, k0 += 0x9E3779B9, k1 += 0xBB67AE85 (mod 2**32).
Ten rounds (nine key steps) give Philox4x32-10, checked against Random123's kat_vectors.

Stream contract (kernels_cl/philox.cl must follow it word for word)
-------------------------------------------------------------------
A random op is given ``seed`` (an int, taken mod 2**64, so a negative seed means its two's
complement, exactly as a C cast to ``ulong``) and ``offset`` (an int in [0, 2**64), counted in
*blocks* of four words).  Its stream of 32-bit words is::

    key      = (seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF)
    block c  = (offset + i // 4) mod 2**64
    counter  = (c & 0xFFFFFFFF, c >> 32, 0, 0)
    word[i]  = philox4x32_10(counter, key)[i % 4]

Distributions read the stream as follows (element i of the flattened, C-ordered output):

* uniform float32: ``u = (word[i] >> 8) * 2**-24`` (exact, in [0, 1)), then
  ``low + (high - low) * u`` in float32, each operation rounded on its own (no fused
  multiply-add: the OpenCL side turns FP_CONTRACT off).
* uniform float64: ``a = word[2i] >> 5`` (27 bits), ``b = word[2i+1] >> 6`` (26 bits),
  ``u = (a * 2**26 + b) * 2**-53`` (exact, in [0, 1)), then ``low + (high - low) * u`` in float64.
* normal float32: Box-Muller on the pair p = i // 2, from words 2p and 2p+1:
  ``u1 = 1 - uniform(word[2p])`` in (0, 1] so the log is finite, ``u2 = uniform(word[2p+1])``,
  ``r = sqrt(-2 * log(u1))``, ``t = float32(2 pi) * u2``; element 2p is ``r * cos(t)``,
  element 2p+1 is ``r * sin(t)``; then ``mean + std * z``; all in float32.
* normal float64: the same with 53-bit uniforms: pair p uses words 4p..4p+3, u1 from
  (4p, 4p+1) and u2 from (4p+2, 4p+3).
* bernoulli: ``uniform_float32(word[i]) < float32(p)``, then cast to the output dtype.

Bit-identity across numpy and OpenCL: the raw words, uniform (float32 and float64) and bernoulli
are bit-identical, because they use only integer operations and correctly rounded +, -, *.
normal is not: log, sqrt, sin and cos differ by a few ulp between libm/numpy and OpenCL
builtins, so compare normals with a tolerance (rtol 1e-5, atol 1e-6 for float32).

Offsets: an op with n elements uses ``blocks_used(kind, n, dtype)`` blocks starting at its
offset; giving the next op ``offset + blocks_used(...)`` keeps the streams disjoint.
"""

from __future__ import annotations

import numpy as np

PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85

_MASK32 = 0xFFFFFFFF
_MASK64 = (1 << 64) - 1
_TWO_PI_F32 = np.float32(2.0 * np.pi)
_TWO_PI_F64 = np.float64(2.0 * np.pi)
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _mul_hi_lo(a: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the high and low 32-bit halves of the 64-bit product m * a."""
    # Two uint32 factors give a product < 2**64, so uint64 holds it exactly.
    prod = a.astype(np.uint64) * np.uint64(m)
    return (prod >> np.uint64(32)).astype(np.uint32), prod.astype(np.uint32)


def _round(c: tuple[np.ndarray, ...], k0: np.ndarray, k1: np.ndarray) -> tuple[np.ndarray, ...]:
    """Apply one Philox4x32 round to the counter words c."""
    hi0, lo0 = _mul_hi_lo(c[0], PHILOX_M0)
    hi1, lo1 = _mul_hi_lo(c[2], PHILOX_M1)
    return (hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0)


def philox4x32(
    counters: np.ndarray, key: tuple[int, int] | np.ndarray, rounds: int = 10
) -> np.ndarray:
    """Philox4x32-`rounds` of uint32 counters [..., 4] under key (k0, k1) or uint32 [..., 2]."""
    ctr = np.asarray(counters, dtype=np.uint32)
    if ctr.shape[-1:] != (4,):
        raise ValueError(f"counters must have last dimension 4, got shape {ctr.shape}")
    if rounds < 0:
        raise ValueError(f"rounds must be >= 0, got {rounds}")
    # Keys step in uint64 and are masked back: numpy warns on uint32 scalar overflow.
    keys = np.asarray(key, dtype=np.uint64) & np.uint64(_MASK32)
    if keys.shape[-1:] != (2,):
        raise ValueError(f"key must have last dimension 2, got shape {keys.shape}")
    k0, k1 = keys[..., 0], keys[..., 1]
    c = tuple(ctr[..., j] for j in range(4))
    for r in range(rounds):
        if r > 0:
            k0 = (k0 + np.uint64(PHILOX_W0)) & np.uint64(_MASK32)
            k1 = (k1 + np.uint64(PHILOX_W1)) & np.uint64(_MASK32)
        c = _round(c, k0.astype(np.uint32), k1.astype(np.uint32))
    return np.stack(np.broadcast_arrays(*c), axis=-1)


def seed_key(seed: int) -> tuple[int, int]:
    """Split a seed (taken mod 2**64) into the Philox key (low word, high word)."""
    s = int(seed) & _MASK64
    return s & _MASK32, s >> 32


def _check_offset(offset: int) -> int:
    """Validate a block offset and return it as an int."""
    offset = int(offset)
    if not 0 <= offset <= _MASK64:
        raise ValueError(f"offset must be in [0, 2**64), got {offset}")
    return offset


def random_blocks(seed: int, offset: int, nblocks: int) -> np.ndarray:
    """Return the uint32 [nblocks, 4] Philox outputs for blocks offset .. offset+nblocks-1."""
    # uint64 array arithmetic wraps mod 2**64, matching the OpenCL ulong counter.
    c = np.uint64(_check_offset(offset)) + np.arange(nblocks, dtype=np.uint64)
    ctr = np.zeros((nblocks, 4), dtype=np.uint32)
    ctr[:, 0] = c.astype(np.uint32)
    ctr[:, 1] = (c >> np.uint64(32)).astype(np.uint32)
    return philox4x32(ctr, seed_key(seed))


def random_bits(seed: int, offset: int, n: int) -> np.ndarray:
    """Return the first n uint32 words of the stream (seed, offset); see the module contract."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return random_blocks(seed, offset, -(-n // 4)).reshape(-1)[:n]


def blocks_used(kind: str, n: int, dtype=np.float32) -> int:
    """Return how many 4-word blocks n elements of kind bits/uniform/normal/bernoulli read."""
    wide = np.dtype(dtype) == np.float64
    if kind in ("bits", "bernoulli"):
        words = n
    elif kind == "uniform":
        words = 2 * n if wide else n
    elif kind == "normal":
        words = (4 if wide else 2) * -(-n // 2)
    else:
        raise ValueError(f"unknown random kind {kind!r}")
    return -(-words // 4)


def _size(shape) -> tuple[tuple[int, ...], int]:
    """Normalize an int or tuple shape and return it with its element count."""
    shape = (int(shape),) if np.isscalar(shape) else tuple(int(d) for d in shape)
    return shape, int(np.prod(shape, dtype=np.int64))


def _float_dtype(dtype) -> np.dtype:
    """Return dtype as a numpy dtype, rejecting anything but float32/float64."""
    dt = np.dtype(dtype)
    if dt not in _FLOAT_DTYPES:
        raise TypeError(f"random floats are float32 or float64, got {dt}")
    return dt


def _unit_f32(words: np.ndarray) -> np.ndarray:
    """Map uint32 words to float32 in [0, 1) using the top 24 bits (exact)."""
    return (words >> np.uint32(8)).astype(np.float32) * np.float32(2.0**-24)


def _unit_f64(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Map word pairs to float64 in [0, 1) using 27 + 26 bits (exact)."""
    a = (hi >> np.uint32(5)).astype(np.uint64)
    b = (lo >> np.uint32(6)).astype(np.uint64)
    return ((a << np.uint64(26)) | b).astype(np.float64) * np.float64(2.0**-53)


def _unit(seed: int, offset: int, n: int, dt: np.dtype) -> np.ndarray:
    """Return n uniforms in [0, 1) of float dtype dt from the stream."""
    if dt == np.float32:
        return _unit_f32(random_bits(seed, offset, n))
    w = random_bits(seed, offset, 2 * n)
    return _unit_f64(w[0::2], w[1::2])


def uniform(
    seed: int, offset: int, shape, dtype=np.float32, low: float = 0.0, high: float = 1.0
) -> np.ndarray:
    """Return uniforms low + (high - low) * u, u in [0, 1), computed in dtype (see contract)."""
    dt = _float_dtype(dtype)
    shape, n = _size(shape)
    u = _unit(seed, offset, n, dt)
    lo, hi = dt.type(low), dt.type(high)
    return (lo + (hi - lo) * u).reshape(shape)


def _box_muller_words(
    seed: int, offset: int, npairs: int, dt: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    """Return (u1 in (0, 1], u2 in [0, 1)) for npairs Box-Muller pairs in dtype dt."""
    if dt == np.float32:
        w = random_bits(seed, offset, 2 * npairs)
        # 1 - k * 2**-24 is exact, and never 0, so log(u1) is finite.
        return np.float32(1.0) - _unit_f32(w[0::2]), _unit_f32(w[1::2])
    w = random_bits(seed, offset, 4 * npairs)
    return np.float64(1.0) - _unit_f64(w[0::4], w[1::4]), _unit_f64(w[2::4], w[3::4])


def normal(
    seed: int, offset: int, shape, dtype=np.float32, mean: float = 0.0, std: float = 1.0
) -> np.ndarray:
    """Return normals mean + std * z by Box-Muller, computed in dtype (see contract)."""
    dt = _float_dtype(dtype)
    shape, n = _size(shape)
    u1, u2 = _box_muller_words(seed, offset, -(-n // 2), dt)
    r = np.sqrt(dt.type(-2.0) * np.log(u1))
    theta = (_TWO_PI_F32 if dt == np.float32 else _TWO_PI_F64) * u2
    z = np.empty(2 * u1.size, dtype=dt)
    z[0::2] = r * np.cos(theta)
    z[1::2] = r * np.sin(theta)
    return (dt.type(mean) + dt.type(std) * z[:n]).reshape(shape)


def bernoulli(seed: int, offset: int, shape, p: float = 0.5, dtype=np.float32) -> np.ndarray:
    """Return 1 where the float32 uniform is below float32(p), else 0, as dtype."""
    shape, n = _size(shape)
    u = _unit_f32(random_bits(seed, offset, n))
    return (u < np.float32(p)).astype(dtype).reshape(shape)
