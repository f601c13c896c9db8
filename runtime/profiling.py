"""Per-kernel timing reports (GRAPHC_DEBUG=2): time, GFLOP/s and GB/s for each launch."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .launch import KernelLaunch


@dataclass(frozen=True)
class KernelTiming:
    """One launch's measured time and the throughput derived from its declared cost."""

    name: str
    seconds: float
    flops: int
    bytes_moved: int

    @property
    def gflops(self) -> float:
        """Achieved GFLOP/s (0 when the time or the flop count is unknown)."""
        return self.flops / self.seconds * 1e-9 if self.seconds > 0 else 0.0

    @property
    def gbytes_per_s(self) -> float:
        """Achieved GB/s over the bytes the launch reads and writes."""
        return self.bytes_moved / self.seconds * 1e-9 if self.seconds > 0 else 0.0


def kernel_timings(launches: Sequence[KernelLaunch],
                   profile: Sequence[tuple[str, float]]) -> list[KernelTiming]:
    """Pair each launch with its measured seconds (Executable.last_profile)."""
    if len(launches) != len(profile):
        raise ValueError(f"{len(launches)} launches but {len(profile)} timings")
    return [KernelTiming(launch.name, seconds, launch.flops,
                         launch.bytes_read + launch.bytes_written)
            for launch, (_, seconds) in zip(launches, profile)]


def format_profile(launches: Sequence[KernelLaunch],
                   profile: Sequence[tuple[str, float]]) -> str:
    """A table with one line per kernel launch and a total line."""
    timings = kernel_timings(launches, profile)
    width = max([len("kernel")] + [len(t.name) for t in timings])
    lines = [f"{'kernel':<{width}}  {'time ms':>10}  {'GFLOP/s':>9}  {'GB/s':>8}"]
    lines += [_row(t, width) for t in timings]
    total = KernelTiming("total", sum(t.seconds for t in timings),
                         sum(t.flops for t in timings), sum(t.bytes_moved for t in timings))
    lines.append(_row(total, width))
    return "\n".join(lines)


def _row(timing: KernelTiming, width: int) -> str:
    """One formatted table line."""
    return (f"{timing.name:<{width}}  {timing.seconds * 1e3:>10.3f}  "
            f"{timing.gflops:>9.2f}  {timing.gbytes_per_s:>8.2f}")
