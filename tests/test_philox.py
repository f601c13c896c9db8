"""Tests for graphc.philox (numpy reference) and kernels_cl/philox.cl (OpenCL twin)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from graphc import philox

PHILOX_CL = Path(__file__).parents[1] / "kernels_cl/philox.cl"

# Random123 tests/kat_vectors (github.com/DEShawResearch/random123), the philox4x32 lines:
# rounds, counter (4 words), key (2 words), expected output (4 words).
KAT_VECTORS = [
    (7, [0, 0, 0, 0], [0, 0], [0x5F6FB709, 0x0D893F64, 0x4F121F81, 0x4F730A48]),
    (7, [0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x5207DDC2, 0x45165E59, 0x4D8EE751, 0x8C52F662]),
    (7, [0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], [0xA4093822, 0x299F31D0],
     [0x4DFCCABA, 0x190A87F0, 0xC47362BA, 0xB6B5242A]),
    (10, [0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
    (10, [0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
    (10, [0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344], [0xA4093822, 0x299F31D0],
     [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1]),
]
KAT_10 = [v for v in KAT_VECTORS if v[0] == 10]

SEED64 = 0x0123456789ABCDEF
# Close below 2**32 blocks, so a 1003-element stream carries into the counter's high word.
OFFSET = 2**32 - 100


def six_sigma(sd: float, n: int) -> float:
    """Return a 6-sigma bound for a sample mean of n draws with standard deviation sd."""
    return 6.0 * sd / math.sqrt(n)


# ---------------------------------------------------------------- known answers


@pytest.mark.parametrize("rounds,ctr,key,expected", KAT_VECTORS)
def test_known_answer_vectors(rounds, ctr, key, expected):
    out = philox.philox4x32(np.array(ctr, np.uint32), tuple(key), rounds=rounds)
    assert out.dtype == np.uint32
    assert out.tolist() == expected


def test_known_answers_vectorized_with_per_row_keys():
    ctr = np.array([v[1] for v in KAT_10], np.uint32)
    key = np.array([v[2] for v in KAT_10], np.uint32)
    out = philox.philox4x32(ctr, key)
    assert out.shape == (3, 4)
    assert out.tolist() == [v[3] for v in KAT_10]


def test_random_bits_follows_the_counter_contract():
    seed, offset, n = SEED64, OFFSET, 37
    bits = philox.random_bits(seed, offset, n)
    key = (seed & 0xFFFFFFFF, seed >> 32)
    for i in (0, 1, 5, 36):
        c = offset + i // 4
        block = philox.philox4x32(np.array([c & 0xFFFFFFFF, c >> 32, 0, 0], np.uint32), key)
        assert bits[i] == block[i % 4]


def test_counter_wraps_mod_2_64_and_negative_seed_is_twos_complement():
    wrapped = philox.random_bits(-1, 2**64 - 1, 8)
    assert np.array_equal(wrapped[4:], philox.random_bits(2**64 - 1, 0, 4))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="offset"):
        philox.random_bits(0, -1, 4)
    with pytest.raises(ValueError, match="last dimension 4"):
        philox.philox4x32(np.zeros(3, np.uint32), (0, 0))
    with pytest.raises(TypeError, match="float32 or float64"):
        philox.uniform(0, 0, 4, dtype=np.int32)


# ---------------------------------------------------------------- streams


def test_same_seed_same_stream_and_different_seeds_differ():
    a = philox.random_bits(42, 7, 4096)
    assert np.array_equal(a, philox.random_bits(42, 7, 4096))
    b = philox.random_bits(43, 7, 4096)
    # Independent 32-bit words agree with probability 2**-32 each.
    assert np.count_nonzero(a == b) <= 2
    assert not np.array_equal(philox.random_bits(1 << 32, 7, 16), philox.random_bits(0, 7, 16))


def test_offset_shifts_the_stream_by_whole_blocks():
    base = philox.random_bits(SEED64, OFFSET, 400)
    assert np.array_equal(base[4 * 25:], philox.random_bits(SEED64, OFFSET + 25, 300))


@pytest.mark.parametrize("kind,dtype", [("uniform", np.float32), ("uniform", np.float64),
                                        ("normal", np.float32), ("normal", np.float64),
                                        ("bernoulli", np.float32)])
def test_consecutive_ops_read_disjoint_blocks(kind, dtype):
    n = 1001
    used = philox.blocks_used(kind, n, dtype)
    first = philox.random_blocks(SEED64, 5, used)
    second = philox.random_blocks(SEED64, 5 + used, used)
    # 128-bit blocks of distinct counters collide with probability ~2**-128.
    assert not set(map(bytes, first)) & set(map(bytes, second))
    # The op really reads no further than blocks_used says.
    sample = {"uniform": philox.uniform, "normal": philox.normal}.get(kind)
    if sample is not None:
        head = sample(SEED64, 5, n + 1, dtype)[:n]
        assert np.array_equal(head, sample(SEED64, 5, n, dtype))


def test_shapes_and_dtypes():
    assert philox.uniform(1, 0, (3, 5)).shape == (3, 5)
    assert philox.normal(1, 0, (2, 3), np.float64).dtype == np.float64
    assert philox.bernoulli(1, 0, 7, 0.5, np.bool_).dtype == np.bool_
    assert philox.random_bits(1, 0, 0).shape == (0,)


# ---------------------------------------------------------------- distributions


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_uniform_range_and_moments(dtype):
    n = 1_000_000
    u = philox.uniform(123, 0, n, dtype).astype(np.float64)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < six_sigma(math.sqrt(1 / 12), n)
    # Var of (u - 1/2)**2 is 1/80 - 1/144.
    assert abs(((u - 0.5) ** 2).mean() - 1 / 12) < six_sigma(math.sqrt(1 / 80 - 1 / 144), n)


def test_uniform_float32_is_a_multiple_of_2_pow_minus_24():
    u = philox.uniform(5, 0, 10_000)
    assert np.array_equal(u * 2**24, np.floor(u * 2**24))


def test_uniform_low_high():
    u = philox.uniform(9, 0, 100_000, low=-2.0, high=3.0)
    assert u.min() >= -2.0 and u.max() < 3.0
    assert abs(u.mean() - 0.5) < six_sigma(5 * math.sqrt(1 / 12), u.size)


def normal_cdf(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF via math.erf (no scipy)."""
    phi = np.frompyfunc(lambda v: 0.5 * (1.0 + math.erf(v / math.sqrt(2.0))), 1, 1)
    return phi(x).astype(np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normal_moments_and_ks(dtype):
    n = 1_000_000
    z = philox.normal(2024, 3, n, dtype).astype(np.float64)
    assert np.all(np.isfinite(z))
    assert abs(z.mean()) < six_sigma(1.0, n)
    # Var of z**2 is E z**4 - 1 = 2.
    assert abs((z**2).mean() - 1.0) < six_sigma(math.sqrt(2.0), n)
    # Kolmogorov-Smirnov: P(sqrt(m) * D > 1.95) is about 0.001 for a true normal sample.
    m = 100_000
    x = np.sort(z[:m])
    cdf = normal_cdf(x)
    d = max((np.arange(1, m + 1) / m - cdf).max(), (cdf - np.arange(m) / m).max())
    assert math.sqrt(m) * d < 1.95


def test_normal_float32_is_bounded_by_the_smallest_u1():
    # u1 >= 2**-24, so |z| <= sqrt(-2 log 2**-24) = 5.77.
    z = philox.normal(77, 0, 200_000)
    assert np.abs(z).max() <= math.sqrt(48 * math.log(2)) + 1e-5


def test_normal_mean_std():
    z = philox.normal(8, 0, 100_000, mean=3.0, std=0.5)
    assert abs(z.mean() - 3.0) < six_sigma(0.5, z.size)


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_bernoulli_frequency(p):
    n = 1_000_000
    b = philox.bernoulli(31337, 11, n, p)
    assert set(np.unique(b).tolist()) <= {0.0, 1.0}
    assert abs(b.mean() - p) <= six_sigma(math.sqrt(p * (1 - p)), n)


def test_bernoulli_is_uniform_below_p():
    u = philox.uniform(4, 2, 5000)
    expected = (u < np.float32(0.3)).astype(np.float32)
    assert np.array_equal(philox.bernoulli(4, 2, 5000, 0.3), expected)


# ---------------------------------------------------------------- OpenCL

TEST_KERNELS = r"""
__kernel void philox_kat(__global const uint4 *ctr, __global const uint2 *key,
                         __global uint4 *out)
{
    size_t i = get_global_id(0);
    out[i] = graphc_philox4x32_10(ctr[i], key[i]);
}

__kernel void philox_f32(ulong seed, ulong offset, float low, float high,
                         float mean, float stddev, float p,
                         __global uint *bits, __global float *uni,
                         __global float *nrm, __global float *ber)
{
    ulong i = get_global_id(0);
    bits[i] = graphc_random_bits(seed, offset, i);
    uni[i] = graphc_uniform_f32(seed, offset, i, low, high);
    nrm[i] = graphc_normal_f32(seed, offset, i, mean, stddev);
    ber[i] = graphc_bernoulli_f32(seed, offset, i, p);
}

#if defined(cl_khr_fp64)
__kernel void philox_f64(ulong seed, ulong offset, double low, double high,
                         __global double *uni, __global double *nrm)
{
    ulong i = get_global_id(0);
    uni[i] = graphc_uniform_f64(seed, offset, i, low, high);
    nrm[i] = graphc_normal_f64(seed, offset, i, 0.0, 1.0);
}
#endif
"""


def opencl_device():
    """Return (pyopencl, device), preferring a CPU over all platforms, or skip the test."""
    try:
        import pyopencl as cl
    except ImportError as exc:  # absent, or present without a loadable libOpenCL
        pytest.skip(f"pyopencl unavailable: {exc}")
    try:
        platforms = cl.get_platforms()
    except cl.Error as exc:  # no ICD or no platform installed
        pytest.skip(f"no OpenCL platform: {exc}")
    devices = []
    for platform in platforms:
        try:
            devices += platform.get_devices()
        except cl.Error:  # a platform with no devices raises DEVICE_NOT_FOUND
            continue
    if not devices:
        pytest.skip("no OpenCL device")
    cpus = [d for d in devices if d.type & cl.device_type.CPU]
    return cl, (cpus or devices)[0]


def build_program(cl, device):
    """Compile philox.cl plus the test kernels for device; return (context, queue, program)."""
    ctx = cl.Context([device])
    queue = cl.CommandQueue(ctx)
    source = PHILOX_CL.read_text() + TEST_KERNELS
    return ctx, queue, cl.Program(ctx, source).build()


def run_kernel(cl, ctx, queue, kernel, n, scalars, out_dtypes, inputs=()):
    """Launch kernel over n items with scalar args and input arrays; return the outputs."""
    mf = cl.mem_flags
    in_bufs = [cl.Buffer(ctx, mf.READ_ONLY | mf.COPY_HOST_PTR, hostbuf=a) for a in inputs]
    outs = [np.empty(shape, dt) for shape, dt in out_dtypes]
    out_bufs = [cl.Buffer(ctx, mf.WRITE_ONLY, o.nbytes) for o in outs]
    kernel(queue, (n,), None, *scalars, *in_bufs, *out_bufs)
    for o, buf in zip(outs, out_bufs):
        cl.enqueue_copy(queue, o, buf)
    queue.finish()
    return outs


@pytest.mark.opencl
def test_opencl_known_answers():
    cl, device = opencl_device()
    ctx, queue, prg = build_program(cl, device)
    ctr = np.array([v[1] for v in KAT_10], np.uint32)
    key = np.array([v[2] for v in KAT_10], np.uint32)
    (out,) = run_kernel(cl, ctx, queue, prg.philox_kat, 3, [], [((3, 4), np.uint32)], [ctr, key])
    assert out.tolist() == [v[3] for v in KAT_10]


@pytest.mark.opencl
def test_opencl_matches_numpy_float32():
    cl, device = opencl_device()
    ctx, queue, prg = build_program(cl, device)
    n, low, high, mean, std, p = 1003, -2.5, 3.7, 0.25, 1.5, 0.3
    scalars = [np.uint64(SEED64), np.uint64(OFFSET), np.float32(low), np.float32(high),
               np.float32(mean), np.float32(std), np.float32(p)]
    outs = [((n,), np.uint32)] + [((n,), np.float32)] * 3
    bits, uni, nrm, ber = run_kernel(cl, ctx, queue, prg.philox_f32, n, scalars, outs)
    assert np.array_equal(bits, philox.random_bits(SEED64, OFFSET, n))
    # A nonzero low and high catch a fused multiply-add the numpy side does not do.
    assert np.array_equal(uni, philox.uniform(SEED64, OFFSET, n, np.float32, low, high))
    assert np.array_equal(ber, philox.bernoulli(SEED64, OFFSET, n, p))
    np.testing.assert_allclose(nrm, philox.normal(SEED64, OFFSET, n, np.float32, mean, std),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.opencl
def test_opencl_matches_numpy_float64():
    cl, device = opencl_device()
    if "cl_khr_fp64" not in device.extensions:
        pytest.skip(f"{device.name} has no fp64")
    ctx, queue, prg = build_program(cl, device)
    n, low, high = 1003, -1.25, 7.5
    scalars = [np.uint64(SEED64), np.uint64(OFFSET), np.float64(low), np.float64(high)]
    uni, nrm = run_kernel(cl, ctx, queue, prg.philox_f64, n, scalars, [((n,), np.float64)] * 2)
    assert np.array_equal(uni, philox.uniform(SEED64, OFFSET, n, np.float64, low, high))
    expected = philox.normal(SEED64, OFFSET, n, np.float64)
    np.testing.assert_allclose(nrm, expected, rtol=1e-12, atol=1e-14)
