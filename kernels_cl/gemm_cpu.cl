/* GEMM, CPU variant: C[b] = op(A[b]) @ op(B[b]), then a store epilogue.
 *
 * A string.Template for graphc/codegen/gemm.py: the $$-placeholders are filled in and every
 * size is a compile-time constant. One work item (local size 1,1,1) computes an MC x NC block
 * of C, NC = NP panels of TN columns. For each depth block of KC it packs its B block into
 * local memory (per panel KC x TN, contiguous, zero past N, transposed here when B is), then
 * walks R-row register tiles over the panels: R x NV vectors of width W, fed by one broadcast
 * A value per row and step. Rows past M read row M-1 (in bounds) and are not stored. With
 * several depth blocks the accumulators rest in local memory between blocks.
 */

void ${name}_pack_b(__global const ${T}* restrict bm, __local ${T}* restrict bp,
                    const int jb, const int kb, const int kc)
{
    for (int p = 0; p < ${NP}; ++p) {
        const int j0 = jb + p * ${TN};
        __local ${T}* panel = bp + p * ${KC} * ${TN};
#if ${B_TRANS}
        for (int c = 0; c < ${TN}; ++c) {
            __global const ${T}* col = bm + (j0 + c) * ${K} + kb;
            if (j0 + c < ${N}) {
                for (int k = 0; k < kc; ++k) panel[k * ${TN} + c] = col[k];
            } else {
                for (int k = 0; k < kc; ++k) panel[k * ${TN} + c] = 0;
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
}

__kernel void ${name}(__global const ${T}* restrict A, __global const ${T}* restrict B${params})
{
    __local ${T} bp[${NP} * ${KC} * ${TN}];
#if ${NKB} > 1
    __local ${VT} spill[${MC} * ${NP} * ${NV}];
#endif
    const int jb = get_global_id(${COL_DIM}) * ${NP} * ${TN};
    const int ib = get_global_id(${ROW_DIM}) * ${MC};
    const int batch_ = get_global_id(2);
    __global const ${T}* am = A + batch_ * ${A_BATCH};
    __global const ${T}* bm = B + batch_ * ${B_BATCH};
    const int iend = min(ib + ${MC}, ${M});
    for (int kb = 0; kb < ${K}; kb += ${KC}) {
        const int kc = min(${KC}, ${K} - kb);
        ${name}_pack_b(bm, bp, jb, kb, kc);
        for (int i0 = ib; i0 < iend; i0 += ${R}) {
            __global const ${T}* ap[${R}];
            #pragma unroll
            for (int r = 0; r < ${R}; ++r)
                ap[r] = am + min(i0 + r, ${M} - 1) * ${A_ROW} + kb * ${A_DEPTH};
            for (int p = 0; p < ${NP} && jb + p * ${TN} < ${N}; ++p) {
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
                        const ${VT} a = (${VT})(ap[r][k * ${A_DEPTH}]);
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
