/* GEMM, CPU variant, float16 operands: C[b] = op(A[b]) @ op(B[b]), then a store epilogue.
 *
 * gemm_cpu.cl for operands stored as half (float16) and computed in float, as graphc computes
 * float16 everywhere (no half-arithmetic extension: vload_half converts). Packing converts:
 * the B block is packed into local memory as float (KC x TN panels, zero past N, 4x4 tiles
 * transposed when B is), and A's row tiles are always packed as float too (R values per depth,
 * rows past M repeating row M-1), so the register-tile loop is gemm_cpu.cl's, on floats. The
 * epilogue stores through the kernel IR (rounded to half where it stores float16). No gathered
 * operands (those keep the loop kernel). `T` is float here, the operands' type is half.
 */

#if ${B_TRANS}
/* Copy a TB x TB block, TB rows of B (TB columns of op(B)) at stride K, into the panel
 * transposed, converting to float. */
void ${name}_transpose(__global const half* src, __local float* dst)
{
    ${TRANSPOSE}
}
#endif

/* Copy rows [i0, i0 + R) of op(A) over depths [kb, kb + kc) into apack as kc runs of R
 * floats; rows past M repeat row M-1. */
void ${name}_pack_a(__global const half* am, __local float* apack,
                    const int i0, const int kb, const int kc)
{
#if ${A_TRANS}
    __global const half* src = am + kb * ${M};
    for (int k = 0; k < kc; ++k)
        for (int r = 0; r < ${R}; ++r)
            apack[k * ${R} + r] = vload_half(k * ${M} + min(i0 + r, ${M} - 1), src);
#else
    for (int r = 0; r < ${R}; ++r) {
        __global const half* src = am + min(i0 + r, ${M} - 1) * ${K} + kb;
        for (int k = 0; k < kc; ++k) apack[k * ${R} + r] = vload_half(k, src);
    }
#endif
}

void ${name}_pack_b(__global const half* bm, __local float* bp, const int jb, const int np,
                    const int kb, const int kc)
{
    for (int p = 0; p < np; ++p) {
        const int j0 = jb + p * ${TN};
        __local float* panel = bp + p * ${KC} * ${TN};
#if ${B_TRANS}
        for (int c = 0; c < ${TN}; c += ${TB}) {
            __global const half* col = bm + (j0 + c) * ${K} + kb;
            int k = 0;
            if (j0 + c + ${TB} <= ${N}) {
                for (; k + ${TB} <= kc; k += ${TB})
                    ${name}_transpose(col + k, panel + k * ${TN} + c);
            }
            #pragma clang loop vectorize(disable)
            for (; k < kc; ++k) {
                for (int q = 0; q < ${TB}; ++q) {
                    float value = 0;
                    if (j0 + c + q < ${N}) value = vload_half(q * ${K} + k, col);
                    panel[k * ${TN} + c + q] = value;
                }
            }
        }
#else
        if (j0 + ${TN} <= ${N}) {
            for (int k = 0; k < kc; ++k) {
                __global const half* row = bm + (kb + k) * ${N} + j0;
                #pragma unroll
                for (int v = 0; v < ${NV}; ++v)
                    vstore${W}(vload_half${W}(v, row), v, panel + k * ${TN});
            }
        } else {
            for (int k = 0; k < kc; ++k) {
                __global const half* row = bm + (kb + k) * ${N} + j0;
                for (int c = 0; c < ${TN}; ++c) {
                    float value = 0;
                    if (j0 + c < ${N}) value = vload_half(c, row);
                    panel[k * ${TN} + c] = value;
                }
            }
        }
#endif
    }
}

__kernel void ${name}(__global const half* restrict A, __global const half* restrict B${params})
{
    __local float bp[${NP} * ${KC} * ${TN}];
    __local float apack[${KC} * ${R}];
#if ${NKB} > 1
    __local ${VT} spill[${MC} * ${NP} * ${NV}];
#endif
    /* Balanced split: strip s gets panels [s * P / S, (s + 1) * P / S), rows likewise. */
    const int strip = get_global_id(${COL_DIM}), block = get_global_id(${ROW_DIM});
    const int p0 = strip * ${PANELS} / ${STRIPS};
    const int np = (strip + 1) * ${PANELS} / ${STRIPS} - p0;
    const int jb = p0 * ${TN};
    const int ib = block * ${RTILES} / ${RBLOCKS} * ${R};
    const int iend = min((block + 1) * ${RTILES} / ${RBLOCKS} * ${R}, ${M});
    const int batch_ = get_global_id(2);
    __global const half* am = A + ${A_BASE};
    __global const half* bm = B + ${B_BASE};
    for (int kb = 0; kb < ${K}; kb += ${KC}) {
        const int kc = min(${KC}, ${K} - kb);
        ${name}_pack_b(bm, bp, jb, np, kb, kc);
        for (int i0 = ib; i0 < iend; i0 += ${R}) {
            ${name}_pack_a(am, apack, i0, kb, kc);
            for (int p = 0; p < np; ++p) {
                __local const float* panel = bp + p * ${KC} * ${TN};
                ${VT} acc[${R}][${NV}];
#if ${NKB} > 1
                __local ${VT}* sp = spill + ((i0 - ib) * ${NP} + p * ${R}) * ${NV};
#endif
                #pragma unroll
                for (int r = 0; r < ${R}; ++r) {
                    #pragma unroll
                    for (int v = 0; v < ${NV}; ++v) {
#if ${NKB} > 1
                        acc[r][v] = kb > 0 ? sp[r * ${NV} + v] : 0;
#else
                        acc[r][v] = 0;
#endif
                    }
                }
                for (int k = 0; k < kc; ++k) {
                    ${VT} bv[${NV}];
                    #pragma unroll
                    for (int v = 0; v < ${NV}; ++v) bv[v] = vload${W}(v, panel + k * ${TN});
                    #pragma unroll
                    for (int r = 0; r < ${R}; ++r) {
                        const ${VT} a = (${VT})(apack[k * ${R} + r]);
                        #pragma unroll
                        for (int v = 0; v < ${NV}; ++v) acc[r][v] = a * bv[v] + acc[r][v];
                    }
                }
#if ${NKB} > 1
                if (kb + ${KC} < ${K}) {
                    #pragma unroll
                    for (int r = 0; r < ${R}; ++r) {
                        #pragma unroll
                        for (int v = 0; v < ${NV}; ++v) sp[r * ${NV} + v] = acc[r][v];
                    }
                    continue;
                }
#endif
                float tile[${R} * ${TN}];
                #pragma unroll
                for (int r = 0; r < ${R}; ++r) {
                    #pragma unroll
                    for (int v = 0; v < ${NV}; ++v) vstore${W}(acc[r][v], r * ${NV} + v, tile);
                }
                const int j0 = jb + p * ${TN};
                for (int r = 0; r < ${R} && i0 + r < ${M}; ++r) {
                    const int row_ = i0 + r;
                    for (int c = 0; c < ${TN} && j0 + c < ${N}; ++c) {
                        const int col_ = j0 + c;
                        const float acc_ = tile[r * ${TN} + c];
                        ${STORE}
                    }
                }
            }
        }
    }
}
