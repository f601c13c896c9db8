"""Graph passes: named pure functions `Graph -> Graph`, and `run_pipeline`, which runs a list.

A pass returns its input graph itself when it changes nothing, so `changed` is `new is not
old`. The one ordered list of graph passes lives in `graphc.passes.pipeline`. Passes are
switched off by name (`disabled=("cse",)`), never by position.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from graphc import config
from graphc.errors import VerifyError
from graphc.ir import Graph

OnPass = Callable[[str, Graph], None]


@dataclass(frozen=True)
class Pass:
    """A named pure graph transform; with `counts_hits`, fn(graph, hits) counts rule hits."""

    name: str
    fn: Callable[..., Graph]
    counts_hits: bool = False

    def run(self, graph: Graph) -> tuple[Graph, dict[str, int]]:
        """The transformed graph and the pass's hit counts."""
        if not self.counts_hits:
            return self.fn(graph), {}
        hits: Counter = Counter()
        return self.fn(graph, hits), dict(hits)

    def __call__(self, graph: Graph) -> Graph:
        return self.run(graph)[0]


@dataclass(frozen=True)
class PassRecord:
    """What one pass did: time taken, whether it changed the graph, node counts, rule hits."""

    name: str
    seconds: float
    changed: bool
    nodes_before: int
    nodes_after: int
    hits: dict = field(default_factory=dict)

    def __str__(self) -> str:
        mark = "changed" if self.changed else "-"
        hits = " ".join(f"{k}={v}" for k, v in sorted(self.hits.items()))
        return (f"{self.name:<10} {self.seconds * 1e3:8.2f} ms  {mark:<7}"
                f" nodes {self.nodes_before} -> {self.nodes_after}  {hits}").rstrip()


def verify_enabled(verify_each: bool | None) -> bool:
    """An explicit flag wins; otherwise GRAPHC_VERIFY=1 turns verification on."""
    if verify_each is not None:
        return verify_each
    return config.flag("GRAPHC_VERIFY")


def verify_graph(graph: Graph, when: str) -> None:
    """Run graphc.inspection.verify on `graph`; a failure says `when` (e.g. "after pass cse")."""
    from graphc.inspection.verify import verify
    try:
        verify(graph)
    except VerifyError as exc:
        raise VerifyError(f"{when}: {exc}") from exc


def _check_names(passes: Sequence[Pass], disabled: Iterable[str]) -> set[str]:
    names = {p.name for p in passes}
    unknown = sorted(set(disabled) - names)
    if unknown:
        raise ValueError(f"cannot disable unknown pass(es) {', '.join(unknown)};"
                         f" the passes are {', '.join(p.name for p in passes)}")
    return set(disabled)


def run_pass(one: Pass, graph: Graph, verify_each: bool) -> tuple[Graph, PassRecord]:
    """Run one pass, timed, verified when asked."""
    start = time.perf_counter()
    new, hits = one.run(graph)
    seconds = time.perf_counter() - start
    if verify_each:
        verify_graph(new, f"after pass {one.name}")
    record = PassRecord(one.name, seconds, new is not graph, len(graph.nodes), len(new.nodes),
                        hits)
    return new, record


def run_pipeline(graph: Graph, passes: Sequence[Pass], verify_each: bool | None = None,
                 on_pass: OnPass | None = None,
                 disabled: Iterable[str] = ()) -> tuple[Graph, list[PassRecord]]:
    """Run `passes` in order; `on_pass(name, graph)` sees the graph after every pass."""
    skip = _check_names(passes, disabled)
    verify_each = verify_enabled(verify_each)
    if verify_each:
        verify_graph(graph, "before the first pass")
    records: list[PassRecord] = []
    for one in passes:
        if one.name in skip:
            continue
        graph, record = run_pass(one, graph, verify_each)
        records.append(record)
        if on_pass is not None:
            on_pass(one.name, graph)
    return graph, records


def format_records(records: Sequence[PassRecord]) -> str:
    """The pipeline summary (GRAPHC_DEBUG=1): one line per pass."""
    return "\n".join(str(r) for r in records)
