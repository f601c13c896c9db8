"""Text views of a compiled function: kernels, the ops fused into each, buffers, memory."""
from __future__ import annotations


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def function_summary(fn) -> str:
    """Pipeline summary (GRAPHC_DEBUG=1)."""
    c = fn.compiled
    passes = ", ".join(f"{r.name} {r.seconds * 1e3:.1f}ms" for r in c.pass_records)
    return (f"graphc: {fn.name}: {len(c.graph.nodes)} ops -> {fn.kernel_count} kernels "
            f"({len({k.name for k in c.kernels})} distinct), planned peak "
            f"{_mib(peak_bytes(fn))}, compiled in {fn.compile_seconds:.2f}s on "
            f"{fn.device.name}\n  passes: {passes}")


def peak_bytes(fn) -> int:
    """Planned device memory: every buffer of the plan, variables included."""
    return sum(b.nbytes for b in fn.compiled.plan.buffers)


def format_function(fn, source: bool = False) -> str:
    """The compiled view of a function."""
    plan = fn.compiled.plan
    lines = [f"function {fn.name}: {fn.kernel_count} kernels on {fn.device.name}"]
    for i, launch in enumerate(plan.launches):
        args = ", ".join(a.buffer for a in launch.args)
        lines.append(f"kernel {i} {launch.name}  global={launch.global_size} "
                     f"local={launch.local_size}  read={launch.bytes_read}B "
                     f"written={launch.bytes_written}B  flops={launch.flops}")
        lines.append(f"  args: {args}")
        lines += [f"  fuses {op}" for op in launch.ops]
    lines.append("buffers:")
    for b in plan.buffers:
        lines.append(f"  {b.name:<32} {b.role:<8} {b.nbytes} B")
    lines.append(f"planned peak memory: {_mib(peak_bytes(fn))} "
                 f"(scratch {_mib(fn.compiled.memory.peak_bytes)})")
    if source:
        lines += ["source:", plan.source]
    return "\n".join(lines)
