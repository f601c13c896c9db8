/* GEMM, CPU variant: C[b] = op(A[b]) @ op(B[b]), then a store epilogue.
 *
 * A string.Template for graphc/codegen/gemm.py: the $$-placeholders are filled in and every
 * size is a compile-time constant. One work item (local size 1,1,1) computes a block of C of
 * up to MC rows and NP panels of TN columns; the blocks split C evenly. For each depth block of
 * KC it packs its B block into local memory (per panel KC x TN, contiguous, zero past N,
 * transposed in 4x4 tiles when B is), then walks R-row register tiles over the panels: R x NV
 * vectors of width W, fed by one broadcast A value per row and step (from a packed copy when A
 * is transposed). Rows past M read row M-1 (in bounds) and are not stored. With several depth
 * blocks the accumulators rest in local memory between blocks. A gathered operand (implicit
 * GEMM, see graphc/codegen/gemm_gather.py) is always packed, through its generated helpers:
 * row and column parts of the positions once each, then every element from the two.
 */

${GATHERS}
#if ${B_TRANS}
/* Copy a TB x TB block, TB rows of B (TB columns of op(B)) at stride K, into the panel
 * transposed: TB vector loads, shuffles, TB vector stores. */
void ${name}_transpose(__global const ${T}* src, __local ${T}* dst)
{
    ${TRANSPOSE}
}
#endif

#if ${A_GATHER}
/* Copy rows [i0, i0 + R) of the gathered A over depths [kb, kb + kc) into apack as kc runs
 * of R values; rows past M repeat row M-1. */
void ${name}_pack_a(__global const ${T}* am, __local ${T}* apack,
                    const int i0, const int kb, const int kc)
{
    int ro[${R}], rh[${R}], rw[${R}];
    for (int r = 0; r < ${R}; ++r) {
        const int4 p = ${name}_a_row(min(i0 + r, ${M} - 1));
        ro[r] = p.x; rh[r] = p.y; rw[r] = p.z;
    }
    for (int k = 0; k < kc; ++k) {
        const int4 q = ${name}_a_col(kb + k);
        for (int r = 0; r < ${R}; ++r)
            apack[k * ${R} + r] = ${name}_a_get(am, ro[r] + q.x, rh[r] + q.y, rw[r] + q.z);
    }
}
#elif ${A_TRANS}
/* Copy the R columns of A^T (rows of op(A)) from i0 over depths [kb, kb + kc) into apack as
 * kc runs of R contiguous values: read in place they would be 4 KiB apart for M = 1024, all
 * in one L1 set. Columns past M repeat column M-1. */
void ${name}_pack_a(__global const ${T}* am, __local ${T}* apack,
                    const int i0, const int kb, const int kc)
{
    __global const ${T}* src = am + kb * ${M} + i0;
    if (i0 + ${R} <= ${M}) {
        for (int k = 0; k < kc; ++k) {
            ${A_COPY}
        }
    } else {
        for (int k = 0; k < kc; ++k)
            for (int r = 0; r < ${R}; ++r)
                apack[k * ${R} + r] = src[k * ${M} + min(r, ${M} - 1 - i0)];
    }
}
#endif

void ${name}_pack_b(__global const ${T}* bm, __local ${T}* bp, const int jb, const int np,
                    const int kb, const int kc)
{
#if ${B_GATHER}
    for (int p = 0; p < np; ++p) {
        const int j0 = jb + p * ${TN};
        __local ${T}* panel = bp + p * ${KC} * ${TN};
        /* Column parts as separate arrays, so that the row loop vectorizes (masked gathers). */
        int co[${TN}], ch[${TN}], cw[${TN}];
        for (int c = 0; c < ${TN}; ++c) {
            const int4 q = ${name}_b_col(min(j0 + c, ${N} - 1));
            co[c] = q.x; ch[c] = q.y; cw[c] = q.z;
        }
#if ${B_RUNS}
        /* Each run of RW columns lies along one image row (the gather's runs): it reads
         * consecutive elements of every row of B, masked contiguous loads, not gathers. */
        for (int k = 0; k < kc; ++k) {
            const int4 p = ${name}_b_row(kb + k);
            #pragma unroll
            for (int v = 0; v < ${TN} / ${RW}; ++v) {
                const int c0 = v * ${RW}, h = p.y + ch[c0], w = p.z + cw[c0];
                const bool row_ok = (${N} % ${TN} == 0 || j0 + c0 < ${N}) &&   /* past N: 0 */
                                    ${name}_b_ok_h(h);
                __global const ${T}* src = bm + ${name}_b_at(p.x + co[c0], h, w);
                __local ${T}* dst = panel + k * ${TN} + c0;
                for (int c = 0; c < ${RW}; ++c)
                    dst[c] = row_ok && ${name}_b_ok_w(w + c) ? src[c] : (${T})0;
            }
        }
#else
        for (int k = 0; k < kc; ++k) {
#if ${B_KRUNS}
            /* Four rows inside one of the gather's runs along an image row (no bounds to
             * check): each column's four elements are consecutive, copied as 4 x 4 blocks
             * transposed (vector loads and shuffles) instead of gathered. */
            if (k + 4 <= kc && (kb + k) % ${KRUN} + 4 <= ${KRUN}) {
                const int4 p = ${name}_b_row(kb + k);
                for (int c = 0; c < ${TN}; c += 4) {
                    ${T}4 q[4];
                    #pragma unroll
                    for (int e = 0; e < 4; ++e)
                        q[e] = vload4(0, bm + ${name}_b_at(p.x + co[c + e], p.y + ch[c + e],
                                                           p.z + cw[c + e]));
                    vstore4((${T}4)(q[0].s0, q[1].s0, q[2].s0, q[3].s0), 0,
                            panel + k * ${TN} + c);
                    vstore4((${T}4)(q[0].s1, q[1].s1, q[2].s1, q[3].s1), 0,
                            panel + (k + 1) * ${TN} + c);
                    vstore4((${T}4)(q[0].s2, q[1].s2, q[2].s2, q[3].s2), 0,
                            panel + (k + 2) * ${TN} + c);
                    vstore4((${T}4)(q[0].s3, q[1].s3, q[2].s3, q[3].s3), 0,
                            panel + (k + 3) * ${TN} + c);
                }
                k += 3;
                continue;
            }
#endif
            const int4 p = ${name}_b_row(kb + k);
            for (int c = 0; c < ${TN}; ++c)
                panel[k * ${TN} + c] = ${name}_b_get(bm, p.x + co[c], p.y + ch[c], p.z + cw[c]);
        }
#endif
    }
#else
    for (int p = 0; p < np; ++p) {
        const int j0 = jb + p * ${TN};
        __local ${T}* panel = bp + p * ${KC} * ${TN};
#if ${B_TRANS}
        for (int c = 0; c < ${TN}; c += ${TB}) {
            __global const ${T}* col = bm + (j0 + c) * ${K} + kb;
            int k = 0;
            if (j0 + c + ${TB} <= ${N}) {
                for (; k + ${TB} <= kc; k += ${TB})
                    ${name}_transpose(col + k, panel + k * ${TN} + c);
            }
            /* Scalar rest; not vectorized, which would make it scatter to the panel. */
            #pragma clang loop vectorize(disable)
            for (; k < kc; ++k) {
                for (int q = 0; q < ${TB}; ++q) {
                    ${T} value = 0;
                    if (j0 + c + q < ${N}) value = col[q * ${K} + k];
                    panel[k * ${TN} + c + q] = value;
                }
            }
        }
#else
        if (j0 + ${TN} <= ${N}) {
            for (int k = 0; k < kc; ++k) {
                __global const ${T}* row = bm + (kb + k) * ${N} + j0;
                #pragma unroll
                for (int v = 0; v < ${NV}; ++v)
                    vstore${W}(vload${W}(v, row), v, panel + k * ${TN});
            }
        } else {
            for (int k = 0; k < kc; ++k) {
                __global const ${T}* row = bm + (kb + k) * ${N} + j0;
                for (int c = 0; c < ${TN}; ++c) {
                    ${T} value = 0;
                    if (j0 + c < ${N}) value = row[c];
                    panel[k * ${TN} + c] = value;
                }
            }
        }
#endif
    }
#endif
}

__kernel void ${name}(__global const ${T}* restrict A, __global const ${T}* restrict B${params})
{
    __local ${T} bp[${NP} * ${KC} * ${TN}];
#if ${A_PACK}
    __local ${T} apack[${KC} * ${R}];
#endif
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
    __global const ${T}* am = A + ${A_BASE};
    __global const ${T}* bm = B + ${B_BASE};
    for (int kb = 0; kb < ${K}; kb += ${KC}) {
        const int kc = min(${KC}, ${K} - kb);
        ${name}_pack_b(bm, bp, jb, np, kb, kc);
        for (int i0 = ib; i0 < iend; i0 += ${R}) {
#if ${A_PACK}
            __local const ${T}* ap[${R}];
            ${name}_pack_a(am, apack, i0, kb, kc);
            #pragma unroll
            for (int r = 0; r < ${R}; ++r) ap[r] = apack + r;
#else
            __global const ${T}* ap[${R}];
            #pragma unroll
            for (int r = 0; r < ${R}; ++r) ap[r] = am + min(i0 + r, ${M} - 1) * ${K} + kb;
#endif
            for (int p = 0; p < np; ++p) {
                __local const ${T}* panel = bp + p * ${KC} * ${TN};
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
                        const ${VT} a = (${VT})(ap[r][k * ${A_STEP}]);
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
                ${T} tile[${R} * ${TN}];
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
                        const ${T} acc_ = tile[r * ${TN} + c];
                        ${STORE}
                    }
                }
            }
        }
    }
}
