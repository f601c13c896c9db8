/*
 * philox.cl - Philox-4x32-10 counter-based random numbers for graphc (OpenCL C 1.2).
 *
 * Functions:
 *   uint4  graphc_philox4x32_10(uint4 ctr, uint2 key);
 *   uint4  graphc_random_block(ulong seed, ulong block);
 *   uint   graphc_random_bits(ulong seed, ulong offset, ulong i);
 *   float  graphc_uniform_f32(ulong seed, ulong offset, ulong i, float low, float high);
 *   float  graphc_normal_f32(ulong seed, ulong offset, ulong i, float mean, float stddev);
 *   float  graphc_bernoulli_f32(ulong seed, ulong offset, ulong i, float p);
 *   double graphc_uniform_f64(ulong seed, ulong offset, ulong i, double low, double high);
 *   double graphc_normal_f64(ulong seed, ulong offset, ulong i, double mean, double stddev);
 *   (the two f64 functions exist only where cl_khr_fp64 is defined)
 *
 * Contract (identical to graphc/philox.py, which is the reference):
 *   key     = ((uint)seed, (uint)(seed >> 32))
 *   block c = offset + i / 4                         (ulong, wraps mod 2^64)
 *   counter = ((uint)c, (uint)(c >> 32), 0, 0)
 *   word i  = graphc_philox4x32_10(counter, key)[i % 4]
 *   uniform f32:  u = (float)(word i >> 8) * 2^-24;  low + (high - low) * u
 *   uniform f64:  u = (double)(((ulong)(word 2i >> 5) << 26) | (word 2i+1 >> 6)) * 2^-53
 *   normal f32:   pair p = i / 2; u1 = 1 - u(word 2p), u2 = u(word 2p+1);
 *                 r = sqrt(-2 log u1), t = (float)(2 pi) * u2;
 *                 z = r cos t (i even) or r sin t (i odd); mean + stddev * z
 *   normal f64:   the same with pair p reading words 4p..4p+3 as two 53-bit uniforms
 *   bernoulli:    uniform f32 (low 0, high 1) < p ? 1.0f : 0.0f
 * Raw words, uniforms and bernoulli are bit-identical to numpy provided each +, -, *
 * is rounded on its own: the functions turn FP_CONTRACT off in their bodies, and the
 * program must not be built with -cl-fast-relaxed-math or -cl-mad-enable.
 * Normals use log/sqrt/sin/cos builtins and match numpy only within a few ulp.
 */
#ifndef GRAPHC_PHILOX_CL
#define GRAPHC_PHILOX_CL

#define GRAPHC_PHILOX_M0 0xD2511F53U
#define GRAPHC_PHILOX_M1 0xCD9E8D57U
#define GRAPHC_PHILOX_W0 0x9E3779B9U
#define GRAPHC_PHILOX_W1 0xBB67AE85U

/* One Philox4x32 round: two 32x32->64 multiplies, xor-ed with the key. */
uint4 graphc_philox4x32_round(uint4 c, uint2 k)
{
    uint hi0 = mul_hi(GRAPHC_PHILOX_M0, c.x);
    uint lo0 = GRAPHC_PHILOX_M0 * c.x;
    uint hi1 = mul_hi(GRAPHC_PHILOX_M1, c.z);
    uint lo1 = GRAPHC_PHILOX_M1 * c.z;
    return (uint4)(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
}

/* Philox4x32-10: ten rounds with a Weyl key step between them. */
uint4 graphc_philox4x32_10(uint4 ctr, uint2 key)
{
    const uint2 weyl = (uint2)(GRAPHC_PHILOX_W0, GRAPHC_PHILOX_W1);
    ctr = graphc_philox4x32_round(ctr, key);
    for (int r = 1; r < 10; ++r) {
        key += weyl;
        ctr = graphc_philox4x32_round(ctr, key);
    }
    return ctr;
}

/* The four words of block `block` of the stream keyed by `seed`. */
uint4 graphc_random_block(ulong seed, ulong block)
{
    uint4 ctr = (uint4)((uint)block, (uint)(block >> 32), 0U, 0U);
    uint2 key = (uint2)((uint)seed, (uint)(seed >> 32));
    return graphc_philox4x32_10(ctr, key);
}

/* Word j (0..3) of a block. */
uint graphc_block_word(uint4 b, uint j)
{
    return j == 0U ? b.x : (j == 1U ? b.y : (j == 2U ? b.z : b.w));
}

/* Word i of the stream (seed, offset). */
uint graphc_random_bits(ulong seed, ulong offset, ulong i)
{
    uint4 b = graphc_random_block(seed, offset + (i >> 2));
    return graphc_block_word(b, (uint)(i & 3UL));
}

/* A word's top 24 bits as a float in [0, 1); exact. */
float graphc_unit_f32(uint w)
{
    return (float)(w >> 8) * 0x1.0p-24f;
}

float graphc_uniform_f32(ulong seed, ulong offset, ulong i, float low, float high)
{
#pragma OPENCL FP_CONTRACT OFF
    float u = graphc_unit_f32(graphc_random_bits(seed, offset, i));
    return low + (high - low) * u;
}

float graphc_normal_f32(ulong seed, ulong offset, ulong i, float mean, float stddev)
{
#pragma OPENCL FP_CONTRACT OFF
    /* Pair p = i / 2 reads words 2p, 2p+1: one half of block offset + i / 4. */
    uint4 b = graphc_random_block(seed, offset + (i >> 2));
    uint2 w = ((i >> 1) & 1UL) ? b.zw : b.xy;
    float u1 = 1.0f - graphc_unit_f32(w.x); /* in (0, 1]: log stays finite */
    float u2 = graphc_unit_f32(w.y);
    float r = sqrt(-2.0f * log(u1));
    float t = 0x1.921fb6p+2f * u2; /* (float)(2 pi) */
    float z = (i & 1UL) ? r * sin(t) : r * cos(t);
    return mean + stddev * z;
}

float graphc_bernoulli_f32(ulong seed, ulong offset, ulong i, float p)
{
    return graphc_unit_f32(graphc_random_bits(seed, offset, i)) < p ? 1.0f : 0.0f;
}

#if defined(cl_khr_fp64)
#pragma OPENCL EXTENSION cl_khr_fp64 : enable

/* 27 + 26 bits of a word pair as a double in [0, 1); exact. */
double graphc_unit_f64(uint hi, uint lo)
{
    ulong m = ((ulong)(hi >> 5) << 26) | (ulong)(lo >> 6);
    return (double)m * 0x1.0p-53;
}

double graphc_uniform_f64(ulong seed, ulong offset, ulong i, double low, double high)
{
#pragma OPENCL FP_CONTRACT OFF
    /* Element i reads words 2i, 2i+1: one half of block offset + i / 2. */
    uint4 b = graphc_random_block(seed, offset + (i >> 1));
    uint2 w = (i & 1UL) ? b.zw : b.xy;
    double u = graphc_unit_f64(w.x, w.y);
    return low + (high - low) * u;
}

double graphc_normal_f64(ulong seed, ulong offset, ulong i, double mean, double stddev)
{
#pragma OPENCL FP_CONTRACT OFF
    /* Pair p = i / 2 reads all of block offset + p. */
    uint4 b = graphc_random_block(seed, offset + (i >> 1));
    double u1 = 1.0 - graphc_unit_f64(b.x, b.y);
    double u2 = graphc_unit_f64(b.z, b.w);
    double r = sqrt(-2.0 * log(u1));
    double t = 0x1.921fb54442d18p+2 * u2; /* (double)(2 pi) */
    double z = (i & 1UL) ? r * sin(t) : r * cos(t);
    return mean + stddev * z;
}
#endif /* cl_khr_fp64 */

#endif /* GRAPHC_PHILOX_CL */
