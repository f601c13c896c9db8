/*
 * philox.glsl - Philox-4x32-10 counter-based random numbers for graphc's Vulkan backend
 * (GLSL 4.50 with 64-bit integers). The same contract as philox.cl and graphc/philox.py
 * (the reference): raw words, uniforms and bernoulli draws are bit-identical to numpy;
 * `precise` keeps each +, -, * rounded on its own (no fused multiply-add). Normals use the
 * log/sqrt/sin/cos builtins and match numpy within a few ulp (f64: in float32 precision
 * where GLSL has no double log, sin and cos).
 */
#define GRAPHC_PHILOX_M0 0xD2511F53u
#define GRAPHC_PHILOX_M1 0xCD9E8D57u
#define GRAPHC_PHILOX_W0 0x9E3779B9u
#define GRAPHC_PHILOX_W1 0xBB67AE85u

uvec4 graphc_philox4x32_round(uvec4 c, uvec2 k)
{
    uint hi0, lo0, hi1, lo1;
    umulExtended(GRAPHC_PHILOX_M0, c.x, hi0, lo0);
    umulExtended(GRAPHC_PHILOX_M1, c.z, hi1, lo1);
    return uvec4(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
}

uvec4 graphc_philox4x32_10(uvec4 ctr, uvec2 key)
{
    const uvec2 weyl = uvec2(GRAPHC_PHILOX_W0, GRAPHC_PHILOX_W1);
    ctr = graphc_philox4x32_round(ctr, key);
    for (int r = 1; r < 10; ++r) {
        key += weyl;
        ctr = graphc_philox4x32_round(ctr, key);
    }
    return ctr;
}

uvec4 graphc_random_block(uint64_t seed, uint64_t block)
{
    uvec4 ctr = uvec4(uint(block), uint(block >> 32), 0u, 0u);
    uvec2 key = uvec2(uint(seed), uint(seed >> 32));
    return graphc_philox4x32_10(ctr, key);
}

uint graphc_random_bits(uint64_t seed, uint64_t offset, uint64_t i)
{
    uvec4 b = graphc_random_block(seed, offset + (i >> 2));
    return b[int(i & 3ul)];
}

float graphc_unit_f32(uint w)
{
    return float(w >> 8) * 5.9604644775390625e-08;  /* 2^-24, exact */
}

float graphc_uniform_f32(uint64_t seed, uint64_t offset, uint64_t i, float low, float high)
{
    precise float u = graphc_unit_f32(graphc_random_bits(seed, offset, i));
    precise float span = high - low;
    precise float scaled = span * u;
    precise float result = low + scaled;
    return result;
}

float graphc_normal_f32(uint64_t seed, uint64_t offset, uint64_t i, float mean, float stddev)
{
    uvec4 b = graphc_random_block(seed, offset + (i >> 2));
    uvec2 w = (((i >> 1) & 1ul) != 0ul) ? b.zw : b.xy;
    precise float u1 = 1.0 - graphc_unit_f32(w.x);
    precise float u2 = graphc_unit_f32(w.y);
    precise float r = sqrt(-2.0 * log(u1));
    precise float t = 6.2831855 * u2;
    precise float z = ((i & 1ul) != 0ul) ? r * sin(t) : r * cos(t);
    precise float scaled = stddev * z;
    precise float result = mean + scaled;
    return result;
}

float graphc_bernoulli_f32(uint64_t seed, uint64_t offset, uint64_t i, float p)
{
    return graphc_unit_f32(graphc_random_bits(seed, offset, i)) < p ? 1.0 : 0.0;
}

#ifdef GRAPHC_FP64
double graphc_unit_f64(uint hi, uint lo)
{
    uint64_t m = (uint64_t(hi >> 5) << 26) | uint64_t(lo >> 6);
    return double(m) * 1.1102230246251565e-16lf;   /* 2^-53, exact */
}

double graphc_uniform_f64(uint64_t seed, uint64_t offset, uint64_t i, double low, double high)
{
    uvec4 b = graphc_random_block(seed, offset + (i >> 1));
    uvec2 w = ((i & 1ul) != 0ul) ? b.zw : b.xy;
    precise double u = graphc_unit_f64(w.x, w.y);
    precise double span = high - low;
    precise double scaled = span * u;
    precise double result = low + scaled;
    return result;
}
#endif
