"""GEMM kernel generator: batched, layout-aware, with a fused store epilogue, tiled per device.

`gemm_kernel` renders one OpenCL C `__kernel` computing C[b] = op(A[b]) @ op(B[b]) for a
GemmSpec (every size a compile-time constant) and hands each value to an Epilogue's store
statement. The tiling is chosen analytically from a DeviceInfo:

- CPU (PoCL): one work item per MC x NC block of C, local size (1,1,1); the B block is packed
  into local memory and R x TN register tiles of float16/double8 vectors run over it
  (kernels_cl/gemm_cpu.cl).
- GPU: TS x TS local-memory tiles, one output per work item (kernels_cl/gemm_gpu.cl).

`DeviceInfo.tuning` overrides any choice by name (see CPU_TUNING and GPU_TUNING).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import cache, lru_cache
from importlib import resources
from string import Template
from typing import Any

from graphc.codegen.gemm_gather import Gather, gather_code, row_blocks, run_width

ITEMSIZE = {"float": 4, "double": 8, "half": 4}   # half: stored as half, computed in float
COMPUTE = {"half": "float"}     # the C type a dtype's values are computed (and packed) in
INT_MAX = 2**31 - 1
CPU_TUNING = ("rows", "vectors", "width", "panels", "mc", "kc", "order")
GPU_TUNING = ("ts",)
# CPU blocking: the packed B block (KC x NC) and the rows sharing it (MC) per work item.
CPU_KC, CPU_NC, CPU_MC = 256, 128, 256
CPU_ITEMS_PER_UNIT = 4
_STORE_KEYS = re.compile(r"\{(acc|b|i|j|m|n|T)\}")
_IDENT = re.compile(r"[A-Za-z_]\w*")


@dataclass(frozen=True)
class GemmSpec:
    """Sizes, element type and operand layouts of a batched matrix product."""

    batch: int
    m: int
    n: int
    k: int
    dtype: str  # 'float', 'double' or 'half' (C type; half: float16 operands, CPU only)
    a_trans: bool  # A stored as (batch, k, m) instead of (batch, m, k)
    b_trans: bool  # B stored as (batch, n, k) instead of (batch, k, n)
    a_batch_stride: int  # elements between batches of A; 0 broadcasts A over the batch
    b_batch_stride: int
    a_gather: Gather | None = None  # A read through index arithmetic (layout flags ignored)
    b_gather: Gather | None = None

    def __post_init__(self) -> None:
        problems = spec_problems(self)
        if problems:
            raise ValueError(f"invalid {self}: " + "; ".join(problems))

    @property
    def flops(self) -> int:
        """Multiply-adds counted as two FLOPs."""
        return 2 * self.batch * self.m * self.n * self.k


def spec_problems(spec: GemmSpec) -> list[str]:
    """Why a GemmSpec cannot be generated ([] when it can)."""
    problems = [f"{name} must be >= 1" for name in ("batch", "m", "n", "k")
                if getattr(spec, name) < 1]
    if spec.dtype not in ITEMSIZE:
        problems.append(f"dtype must be one of {sorted(ITEMSIZE)}, not {spec.dtype!r}")
    if min(spec.a_batch_stride, spec.b_batch_stride) < 0:
        problems.append("batch strides must be >= 0")
    if spec.dtype == "half" and (spec.a_gather is not None or spec.b_gather is not None):
        problems.append("half operands cannot be gathered")
    if not problems and not fits_32bit(spec.batch, spec.m, spec.n, spec.k, spec.a_batch_stride,
                                       spec.b_batch_stride, spec.a_gather is not None,
                                       spec.b_gather is not None):
        problems.append("sizes exceed 32-bit indexing")
    return problems


def fits_32bit(batch: int, m: int, n: int, k: int, a_stride: int, b_stride: int,
               a_gathered: bool = False, b_gathered: bool = False) -> bool:
    """Can the templates index C and the operands with int? (A gathered operand's positions
    come from its gather's helpers, which index the tensor it gathers from.)"""
    extents = [batch * m * n]
    if not a_gathered:
        extents.append(a_stride * batch + m * k)
    if not b_gathered:
        extents.append(b_stride * batch + k * n)
    return max(extents) <= INT_MAX


@dataclass(frozen=True)
class Epilogue:
    """Extra kernel parameters and the C statement(s) that store one accumulated value.

    `store` may use {acc} (the value), {b} {i} {j} (batch, row, column: C int expressions),
    {m} {n} (the sizes) and {T} (the C element type); other braces are left alone. `params`
    are parameter declarations, where {T} is replaced too. The default writes a row-major
    (batch, m, n) output C.
    """

    params: tuple[str, ...] = ("__global {T}* restrict C",)
    store: str = "C[{b} * {m} * {n} + {i} * {n} + {j}] = {acc};"


@dataclass(frozen=True)
class DeviceInfo:
    """What the tiling choice needs to know about a device; `tuning` overrides choices."""

    type: str  # 'cpu' | 'gpu'
    compute_units: int = 1
    max_work_group_size: int = 256
    local_mem_size: int = 32768
    preferred_float_vector_width: int = 4
    tuning: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)


def device_info_from(device: Any) -> DeviceInfo:
    """The DeviceInfo of a graphc.runtime Device (accelerators get the GPU variant)."""
    return DeviceInfo(
        type="cpu" if device.type == "cpu" else "gpu",
        compute_units=int(device.compute_units),
        max_work_group_size=int(device.max_work_group_size),
        local_mem_size=int(device.local_mem_size),
        preferred_float_vector_width=max(1, int(device.preferred_float_vector_width)),
    )


@dataclass(frozen=True)
class GemmKernel:
    """A rendered GEMM kernel with its launch geometry; `tiles` says what was chosen."""

    name: str
    source: str
    global_size: tuple[int, ...]
    local_size: tuple[int, ...] | None
    flops: int
    tiles: str


@dataclass(frozen=True)
class CpuTiles:
    """CPU tiling: R x NV vectors of width W per register tile, MC x NP*TN per work item."""

    rows: int  # R
    vectors: int  # NV
    width: int  # W
    panels: int  # NP: most register-tile columns per work item
    mc: int  # most rows of C per work item (a multiple of R)
    kc: int  # depth of one packed B panel
    order: str  # 'cols' (column strips vary fastest over work items) or 'rows'

    @property
    def tn(self) -> int:
        """Columns of C per register tile."""
        return self.vectors * self.width

    @property
    def nc(self) -> int:
        """Columns of C per work item."""
        return self.panels * self.tn


@lru_cache(maxsize=512)      # an unrolled RNN asks for the same kernel at every step
def gemm_kernel(name: str, spec: GemmSpec, epilogue: Epilogue,
                device_info: DeviceInfo) -> GemmKernel:
    """Render the GEMM kernel `name` for `spec`, storing through `epilogue`, for a device."""
    if not re.fullmatch(r"[A-Za-z_]\w*", name):
        raise ValueError(f"kernel name {name!r} is not a C identifier")
    unknown = sorted(set(device_info.tuning) - set(CPU_TUNING) - set(GPU_TUNING))
    if unknown:
        raise ValueError(f"unknown GEMM tuning keys {unknown}; known: {CPU_TUNING + GPU_TUNING}")
    if device_info.type == "cpu":
        return _cpu_kernel(name, spec, epilogue, device_info)
    return _gpu_kernel(name, spec, epilogue, device_info)


# ---------------------------------------------------------------- CPU variant


def cpu_tiles(spec: GemmSpec, info: DeviceInfo) -> CpuTiles:
    """Register and cache tiles for the CPU variant, sized to the shape and the vector unit."""
    tune = info.tuning
    lanes = max(1, info.preferred_float_vector_width * 4 // ITEMSIZE[spec.dtype])
    registers = 32 if info.preferred_float_vector_width >= 16 else 16
    width = int(tune.get("width", max(2, min(lanes, 16, _pow2_at_least(spec.n)))))
    vectors = int(tune.get("vectors", _cpu_vectors(spec, width, registers)))
    # Accumulators plus the B vectors and one broadcast A value must stay in registers.
    rows = int(tune.get("rows", min(8, (registers - vectors - 1) // vectors, spec.m)))
    kc = int(tune.get("kc", min(spec.k, CPU_KC)))
    panels, mc = _cpu_block(spec, info, rows, vectors * width)
    order = tune.get("order", "cols")
    if order not in ("cols", "rows"):
        raise ValueError(f"GEMM tuning order must be 'cols' or 'rows', not {order!r}")
    tiles = CpuTiles(rows, vectors, width, int(tune.get("panels", panels)),
                     _round_up(int(tune.get("mc", mc)), rows), kc, order)
    return _fit_local_memory(tiles, spec, info)


def _cpu_vectors(spec: GemmSpec, width: int, registers: int) -> int:
    """Vectors per register-tile row: 2, or up to 4 while fewer than 8 rows leave registers
    for more accumulators (fewer A broadcasts and B loads per multiply-add)."""
    if spec.n <= width:
        return 1
    if spec.m >= 8:
        return 2
    return max(2, min(4, (registers - 1) // (spec.m + 1), _ceil_div(spec.n, width)))


def _cpu_block(spec: GemmSpec, info: DeviceInfo, rows: int, tn: int) -> tuple[int, int]:
    """(panels, MC): the most panels and rows per work item, up to CPU_NC x CPU_MC, after
    splitting C (the longer side of the block first) until every core gets several work items,
    a multiple of the core count where the rows allow."""
    panels, tiles = _ceil_div(spec.n, tn), _ceil_div(spec.m, rows)
    strips = _ceil_div(panels, max(1, CPU_NC // tn))
    blocks = _ceil_div(tiles, max(1, CPU_MC // rows))
    target = CPU_ITEMS_PER_UNIT * info.compute_units
    while strips * blocks * spec.batch < target and (strips < panels or blocks < tiles):
        if blocks < tiles and (tiles / blocks * rows >= panels / strips * tn or
                               strips == panels):
            blocks += 1
        else:
            strips += 1
    while (strips * blocks * spec.batch) % info.compute_units and blocks < tiles:
        blocks += 1
    return _ceil_div(panels, strips), _ceil_div(tiles, blocks) * rows


def _fit_local_memory(tiles: CpuTiles, spec: GemmSpec, info: DeviceInfo) -> CpuTiles:
    """Shrink the packed depth (to 64), the panels, the rows, then the depth to 1 until the
    packed block and the accumulator spill fit the device's local memory."""
    while _cpu_local_bytes(tiles, spec) > info.local_mem_size:
        if tiles.kc > 64:
            tiles = replace(tiles, kc=tiles.kc // 2)
        elif tiles.panels > 1:
            tiles = replace(tiles, panels=tiles.panels // 2)
        elif tiles.mc > tiles.rows:
            tiles = replace(tiles, mc=_round_up(tiles.mc // 2, tiles.rows))
        elif tiles.kc > 1:
            tiles = replace(tiles, kc=tiles.kc // 2)
        else:
            raise ValueError(f"the CPU GEMM variant needs {_cpu_local_bytes(tiles, spec)} bytes "
                             f"of local memory; the device has {info.local_mem_size}")
    return tiles


def _cpu_local_bytes(tiles: CpuTiles, spec: GemmSpec) -> int:
    """Local memory used: the packed B block, the packed A tile when A is transposed, and the
    accumulator spill when K is blocked."""
    spill = tiles.mc * tiles.nc if spec.k > tiles.kc else 0
    a_tile = tiles.kc * tiles.rows if _packs_a(spec) else 0
    return (tiles.kc * tiles.nc + a_tile + spill) * ITEMSIZE[spec.dtype]


def gemm_launch(spec: GemmSpec, info: DeviceInfo) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(global size, local size) of the GEMM kernel of `spec` on a device (no source)."""
    if info.type == "cpu":
        return _cpu_launch(spec, _cpu_values(spec, cpu_tiles(spec, info)))
    ts = gpu_tile_size(spec, info)
    return (_round_up(spec.n, ts), _round_up(spec.m, ts), spec.batch), (ts, ts, 1)


def _cpu_launch(spec: GemmSpec, values: dict) -> tuple[tuple[int, ...], tuple[int, ...]]:
    blocks = (values["STRIPS"], values["RBLOCKS"])
    return (blocks[values["COL_DIM"]], blocks[values["ROW_DIM"]], spec.batch), (1, 1, 1)


def _cpu_kernel(name: str, spec: GemmSpec, epilogue: Epilogue, info: DeviceInfo) -> GemmKernel:
    """The CPU variant: packed B panels and register tiles, local size (1, 1, 1); float16
    operands through gemm_cpu_half.cl (converted as they are packed)."""
    t = cpu_tiles(spec, info)
    values = _cpu_values(spec, t)
    blocks = (values["STRIPS"], values["RBLOCKS"])
    template = "gemm_cpu_half.cl" if spec.dtype == "half" else "gemm_cpu.cl"
    source = _render(template, name, spec, epilogue, values, indent=20)
    global_size, _ = _cpu_launch(spec, values)
    summary = (f"cpu {t.rows}x{t.vectors} {values['VT']} (tile {t.rows}x{t.tn}), blocks of <= "
               f"{values['MC']}x{values['NP'] * t.tn}x{t.kc}, {blocks[0]}x{blocks[1]} items, "
               f"order {t.order}")
    return GemmKernel(name, source, global_size, (1, 1, 1), spec.flops, summary)


def _cpu_values(spec: GemmSpec, t: CpuTiles) -> dict[str, Any]:
    """The CPU template's parameters (besides sizes, layout strides and the epilogue)."""
    panels, tiles = _ceil_div(spec.n, t.tn), _ceil_div(spec.m, t.rows)
    # Work items split the panels and row tiles evenly, each taking at most t.panels x t.mc.
    strips, blocks = _ceil_div(panels, t.panels), _ceil_div(tiles, t.mc // t.rows)
    block = _transpose_block(t.tn)
    run = run_width(spec.b_gather, t.width, t.tn)
    compute = COMPUTE.get(spec.dtype, spec.dtype)
    return dict(
        T=compute, VT=f"{compute}{t.width}", W=t.width, NV=t.vectors, R=t.rows,
        TN=t.tn, KC=t.kc, NKB=_ceil_div(spec.k, t.kc),
        NP=_ceil_div(panels, strips), MC=_ceil_div(tiles, blocks) * t.rows,
        PANELS=panels, STRIPS=strips, RTILES=tiles, RBLOCKS=blocks,
        COL_DIM=0 if t.order == "cols" else 1, ROW_DIM=1 if t.order == "cols" else 0,
        A_TRANS=int(spec.a_trans), A_PACK=int(_packs_a(spec)),
        A_STEP=t.rows if _packs_a(spec) else 1,
        A_COPY=_copy_code(spec.dtype, t.rows, spec.m), B_TRANS=int(spec.b_trans),
        B_RUNS=int(run > 0), RW=max(1, run), B_KRUNS=int(row_blocks(spec.b_gather, t.tn, t.kc)),
        KRUN=spec.b_gather.krun if spec.b_gather is not None and spec.b_gather.krun else 1,
        TB=block, TRANSPOSE=_transpose_code(spec.dtype, block, spec.k, t.tn))


def _packs_a(spec: GemmSpec) -> bool:
    """Whether the CPU variant copies A's row tiles (transposed, gathered or half A) first."""
    return spec.a_trans or spec.a_gather is not None or spec.dtype == "half"


def _copy_code(dtype: str, rows: int, m: int) -> str:
    """Statement copying `rows` contiguous values at src + k * m to apack + k * rows."""
    if rows in (2, 4, 8, 16):
        return f"vstore{rows}(vload{rows}(0, src + k * {m}), 0, apack + k * {rows});"
    return f"for (int r = 0; r < {rows}; ++r) apack[k * {rows} + r] = src[k * {m} + r];"


def _transpose_block(tn: int) -> int:
    """Side of the blocks a transposed B is packed in: 4 (vector shuffles), else 1."""
    return 4 if tn % 4 == 0 else 1


def _transpose_code(dtype: str, block: int, k: int, tn: int) -> str:
    """Statements copying a block x block tile from src (rows k apart) to dst (rows tn apart)
    transposed, as whole-vector loads and stores that the compiler turns into shuffles."""
    if block == 1:
        return "dst[0] = vload_half(0, src);" if dtype == "half" else "dst[0] = src[0];"
    vt = f"{COMPUTE.get(dtype, dtype)}{block}"
    load = "vload_half" if dtype == "half" else "vload"
    loads = [f"const {vt} r{q} = {load}{block}(0, src + {q * k});" for q in range(block)]
    stores = [f"vstore{block}(({vt})(" + ", ".join(f"r{q}.s{c:x}" for q in range(block))
              + f"), 0, dst + {c * tn});" for c in range(block)]
    return "\n    ".join(loads + stores)


# ---------------------------------------------------------------- GPU variant


def gpu_tile_size(spec: GemmSpec, info: DeviceInfo) -> int:
    """Side of the square work group and local tiles: 16 where the device allows."""
    if "ts" in info.tuning:
        return int(info.tuning["ts"])
    itemsize = ITEMSIZE[spec.dtype]
    for ts in (16, 8, 4, 2):
        if ts * ts <= info.max_work_group_size and \
                2 * ts * (ts + 1) * itemsize <= info.local_mem_size:
            return ts
    return 1


def _gpu_kernel(name: str, spec: GemmSpec, epilogue: Epilogue, info: DeviceInfo) -> GemmKernel:
    """The GPU variant: TS x TS local-memory tiles, one output per work item (no half)."""
    if spec.dtype == "half":
        raise ValueError("the GPU GEMM variant has no float16 form (the loop kernel has)")
    ts = gpu_tile_size(spec, info)
    values = dict(T=spec.dtype, TS=ts, A_TRANS=int(spec.a_trans), B_TRANS=int(spec.b_trans))
    source = _render("gemm_gpu.cl", name, spec, epilogue, values, indent=8)
    global_size = (_round_up(spec.n, ts), _round_up(spec.m, ts), spec.batch)
    return GemmKernel(name, source, global_size, (ts, ts, 1), spec.flops,
                      f"gpu {ts}x{ts} local tiles")


# ---------------------------------------------------------------- rendering


def _render(template: str, name: str, spec: GemmSpec, epilogue: Epilogue,
            values: dict[str, Any], indent: int) -> str:
    """Fill a kernels_cl template with the sizes, layout, parameters and store epilogue."""
    text = _template_text(template)
    _check_param_names(epilogue, template)
    store = render_store(epilogue.store, spec).strip().replace("\n", "\n" + " " * indent)
    params = "".join(",\n    " + p.replace("{T}", COMPUTE.get(spec.dtype, spec.dtype))
                     for p in epilogue.params)
    return Template(text).substitute(
        values, name=name, params=params, STORE=store, M=spec.m, N=spec.n, K=spec.k,
        A_BASE=_base(spec.a_gather, spec.a_batch_stride),
        B_BASE=_base(spec.b_gather, spec.b_batch_stride),
        A_GATHER=int(spec.a_gather is not None), B_GATHER=int(spec.b_gather is not None),
        GATHERS=gather_code(name, "a", spec.a_gather, spec.dtype)
        + gather_code(name, "b", spec.b_gather, spec.dtype))


def _base(gather: Gather | None, stride: int) -> str:
    """C expression of an operand's offset in batch `batch_`."""
    return f"({gather.base})" if gather is not None else f"batch_ * {stride}"



def render_store(store: str, spec: GemmSpec) -> str:
    """The epilogue's store statement(s) with the kernel's names and sizes filled in."""
    names = {"acc": "acc_", "b": "batch_", "i": "row_", "j": "col_", "m": str(spec.m),
             "n": str(spec.n), "T": COMPUTE.get(spec.dtype, spec.dtype)}
    return _STORE_KEYS.sub(lambda match: names[match.group(1)], store)


def _check_param_names(epilogue: Epilogue, template: str) -> None:
    """Refuse epilogue parameters that would shadow or clash with the kernel's own names."""
    taken = _template_identifiers(template)
    for param in epilogue.params:
        words = _IDENT.findall(param)
        if not words:
            raise ValueError(f"epilogue parameter {param!r} declares no name")
        if words[-1] in taken:
            raise ValueError(f"epilogue parameter name {words[-1]!r} is used by the GEMM "
                             f"kernel itself; rename it")


@cache
def _template_identifiers(template: str) -> frozenset[str]:
    """Every identifier in a template's code (comments and placeholders removed)."""
    code = re.sub(r"/\*.*?\*/|\$\{\w+\}", " ", _template_text(template), flags=re.S)
    return frozenset(_IDENT.findall(code))


@cache
def _template_text(template: str) -> str:
    """The text of a template shipped in graphc.kernels_cl."""
    return resources.files("graphc.kernels_cl").joinpath(template).read_text()


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _round_up(a: int, b: int) -> int:
    return _ceil_div(a, b) * b


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()
