/* GEMM, GPU variant: C[b] = op(A[b]) @ op(B[b]), then a store epilogue.
 *
 * A string.Template for graphc/codegen/gemm.py: the $$-placeholders are filled in and every
 * size is a compile-time constant. Classic local-memory tiling: a TS x TS work group computes
 * a TS x TS block of C, one element per work item, staging TS x TS tiles of A and B through
 * local memory. Each tile is loaded with the work item index running along the operand's
 * contiguous axis, so the global reads coalesce for either layout; out-of-range elements load
 * as zero. A gathered operand (implicit GEMM) is read through its generated helpers.
 */

${GATHERS}
__kernel __attribute__((reqd_work_group_size(${TS}, ${TS}, 1)))
void ${name}(__global const ${T}* restrict A, __global const ${T}* restrict B${params})
{
    __local ${T} at[${TS}][${TS} + 1];  /* at[row][depth]; +1 avoids bank conflicts */
    __local ${T} bt[${TS}][${TS} + 1];  /* bt[depth][col] */
    const int tx = get_local_id(0);
    const int ty = get_local_id(1);
    const int i0 = get_group_id(1) * ${TS};
    const int j0 = get_group_id(0) * ${TS};
    const int batch_ = get_global_id(2);
    __global const ${T}* am = A + ${A_BASE};
    __global const ${T}* bm = B + ${B_BASE};
    ${T} acc_ = 0;
    for (int k0 = 0; k0 < ${K}; k0 += ${TS}) {
#if ${A_GATHER}
        const int ai = i0 + ty, ak = k0 + tx;
        at[ty][tx] = (ai < ${M} && ak < ${K}) ?
            ${name}_a_gather(am, ai, ak) : 0;
#elif ${A_TRANS}
        const int ai = i0 + tx, ak = k0 + ty;
        at[tx][ty] = (ai < ${M} && ak < ${K}) ? am[ak * ${M} + ai] : 0;
#else
        const int ai = i0 + ty, ak = k0 + tx;
        at[ty][tx] = (ai < ${M} && ak < ${K}) ? am[ai * ${K} + ak] : 0;
#endif
#if ${B_GATHER}
        const int bk = k0 + ty, bj = j0 + tx;
        bt[ty][tx] = (bk < ${K} && bj < ${N}) ?
            ${name}_b_gather(bm, bk, bj) : 0;
#elif ${B_TRANS}
        const int bk = k0 + tx, bj = j0 + ty;
        bt[tx][ty] = (bk < ${K} && bj < ${N}) ? bm[bj * ${K} + bk] : 0;
#else
        const int bk = k0 + ty, bj = j0 + tx;
        bt[ty][tx] = (bk < ${K} && bj < ${N}) ? bm[bk * ${N} + bj] : 0;
#endif
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int k = 0; k < ${TS}; ++k) acc_ += at[ty][k] * bt[k][tx];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const int row_ = i0 + ty;
    const int col_ = j0 + tx;
    if (row_ < ${M} && col_ < ${N}) {
        ${STORE}
    }
}
