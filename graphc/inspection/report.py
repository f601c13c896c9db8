"""A self-contained HTML report of a compiled function (one file: inline SVG, CSS and JS).

It shows the graph with its ops grouped into kernels, a kernel table (time, GFLOP/s, GB/s,
share of the step, from Function.profile), each kernel's ops with the user's lines and its
source, the graph passes' statistics, the buffer plan and the planned peak memory.
`report(fn, feeds, path)` writes one; GRAPHC_DUMP=DIR writes one per compiled function.
"""
from __future__ import annotations

import html
import os
import re
import weakref
from pathlib import Path

from graphc.feeds import missing_feed_error, resolve_feed_keys
from graphc.inspection.anatomy import (anatomy, buffer_labels, compiled_parts, graph_of,
                                       is_compiled, value_names)
from graphc.inspection.dot import GraphvizMissing, dot_of, render_svg
from graphc.inspection.text import (buffer_lines, equation_lines, format_kernels, mib,
                                    plan_bytes, text_of)
from graphc.runtime.profiling import kernel_timings

MAX_SVG_OPS = 1500                   # beyond this, Graphviz takes too long: text only
_reports: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()      # fn -> Path
_timed: "weakref.WeakSet" = weakref.WeakSet()
_written: list[Path] = []            # every report path, in the order first written


def report(function, feeds=None, path="graphc_report.html") -> Path:
    """gc.report: write `function`'s HTML report to `path`. With `feeds` (one array per input,
    or {placeholder or name: array}), one profiled call times the kernels; the variables
    and the call count are restored afterwards, so the report does not train the model."""
    profile = profile_once(function, feeds) if feeds is not None else None
    path = Path(path)
    path.write_text(report_html(function, profile))
    return path


def profile_once(fn, feeds) -> list[tuple[str, float]]:
    """Per-kernel (name, seconds) of one call, leaving variables and fn.calls as they were."""
    arrays = positional_feeds(fn, feeds)
    saved = {name: r.read() for name, r in fn.executable.variables.items()}
    calls = fn.calls
    try:
        return fn.profile(*arrays)
    finally:
        for name, value in saved.items():
            fn.executable.variables[name].write(value)
        fn.calls = calls


def positional_feeds(fn, feeds) -> list:
    """Feeds in input order, from a sequence or a {placeholder or name: array} dict."""
    if not isinstance(feeds, dict):
        return list(feeds)
    resolved = resolve_feed_keys(feeds, fn.inputs)
    missing = [p for p in fn.inputs if p not in resolved]
    if missing:
        raise missing_feed_error(missing[0])
    return [resolved[p] for p in fn.inputs]


# ---- GRAPHC_DUMP ----

def dump_dir() -> Path | None:
    """GRAPHC_DUMP's folder, or None."""
    value = os.environ.get("GRAPHC_DUMP", "")
    return Path(value) if value not in ("", "0") else None


def is_timed(fn) -> bool:
    """Has GRAPHC_DUMP written `fn`'s report with kernel times?"""
    return fn in _timed


def write_function_report(fn, profile, folder: Path | None = None) -> Path:
    """Write (or rewrite) `NN_<name>.html` and `NN_<name>.txt` for `fn` under the folder."""
    folder = Path(folder or dump_dir() or ".")
    folder.mkdir(parents=True, exist_ok=True)
    if fn not in _reports:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", fn.name) or "function"
        _reports[fn] = folder / f"{len(_written) + 1:02d}_{stem}.html"
        _written.append(_reports[fn])
    path = _reports[fn]
    path.write_text(report_html(fn, profile))
    text = "\n\n".join(f"=== {stage} ===\n{_text(fn, stage)}"
                       for stage in ("graph", "optimized", "kernels"))
    path.with_suffix(".txt").write_text(text + "\n")
    if profile:
        _timed.add(fn)
    return path


def has_report(fn) -> bool:
    """Has `fn` a report (GRAPHC_DUMP, or `graphc dump`)?"""
    return fn in _reports


def written_reports() -> list[Path]:
    """Every report written in this process, in the order first written."""
    return list(_written)


def _text(fn, stage: str) -> str:
    return text_of(fn, stage, source=stage == "kernels")


# ---- the page ----

def html_page(obj, stage: str = "kernels") -> str:
    """gc.dump(obj, format="html"): a function's report, or a graph's page."""
    if is_compiled(obj):
        return report_html(obj, getattr(obj, "last_profile", None) or None, stage)
    graph = graph_of(obj, stage)
    body = [_graph_section(lambda: _dot(obj, stage), len(graph.nodes)),
            _section("ir", "IR", f'<pre id="ir-{stage}">{_e(str(graph))}</pre>')]
    return _page(f"graphc: graph {graph.name} ({stage})", "", body)


def report_html(obj, profile=None, stage: str = "kernels") -> str:
    """The report of a Function (or a Compiled) as one HTML document."""
    compiled, name, device = compiled_parts(obj)
    views = anatomy(compiled)
    names = value_names(compiled, views)
    timings = _timings(compiled, profile)
    body = [_graph_section(lambda: _dot(obj, stage), len(compiled.graph.nodes)),
            _kernel_table(views, timings),
            _kernel_details(views, names, buffer_labels(compiled)),
            _pass_table(compiled.pass_records),
            _buffer_section(compiled, names),
            _ir_section(obj, compiled)]
    return _page(f"graphc report: {name}", _summary(obj, compiled, device, timings), body)


def _dot(obj, stage: str) -> str:
    return dot_of(obj, stage)


def _timings(compiled, profile):
    if not profile:
        return None
    return kernel_timings(compiled.plan.launches, profile)


def _summary(obj, compiled, device, timings) -> str:
    parts = [f"{len(compiled.graph.nodes)} ops &rarr; {len(compiled.kernels)} kernels",
             f"planned peak {mib(plan_bytes(compiled))}"]
    if device:
        parts.insert(0, f"device <b>{_e(device)}</b>")
    seconds = getattr(obj, "compile_seconds", None)
    if seconds is not None:
        parts.append(f"compiled in {seconds:.2f} s")
    if timings:
        parts.append(f"step {sum(t.seconds for t in timings) * 1e3:.3f} ms on the device")
    else:
        parts.append("not timed: pass feeds to gc.report for kernel times")
    return '<p class="meta" id="summary">' + " &middot; ".join(parts) + "</p>"


def _graph_section(make_dot, n_ops: int) -> str:
    if n_ops > MAX_SVG_OPS:
        return _section("graph-section", "Graph",
                        f"<p>{n_ops} ops: too many to draw; see the IR below.</p>")
    dot = make_dot()
    try:
        svg = render_svg(dot)
        content = f'<div id="graph" class="graph">{svg[svg.index("<svg"):]}</div>'
    except GraphvizMissing as exc:
        content = (f'<p class="warn">{_e(str(exc))}</p>'
                   f'<pre id="graph-dot" class="dot">{_e(dot)}</pre>')
    return _section("graph-section", "Graph", content)


def _kernel_table(views, timings) -> str:
    total = sum(t.seconds for t in timings) if timings else 0.0
    head = ("<tr><th>#</th><th>kernel</th><th>time ms</th><th>GFLOP/s</th><th>GB/s</th>"
            "<th>share</th><th>flops</th><th>bytes</th><th>global</th><th>ops</th></tr>")
    rows = [_kernel_row(v, timings[v.index] if timings else None, total) for v in views]
    table = (f'<table id="kernels" class="sortable"><thead>{head}</thead>'
             f'<tbody>{"".join(rows)}</tbody></table>')
    return _section("kernels-section", "Kernels", table)


def _kernel_row(view, timing, total: float) -> str:
    launch = view.launch
    share = timing.seconds / total if timing and total > 0 else None
    cells = [str(view.index), f'<a href="#kernel-{view.index}"><code>{_e(launch.name)}</code></a>',
             f"{timing.seconds * 1e3:.3f}" if timing else "&ndash;",
             f"{timing.gflops:.2f}" if timing else "&ndash;",
             f"{timing.gbytes_per_s:.2f}" if timing else "&ndash;",
             _share_cell(share), str(launch.flops),
             str(launch.bytes_read + launch.bytes_written),
             "x".join(map(str, launch.global_size)), _e(_ops_summary(view))]
    tds = "".join(f"<td>{c}</td>" for c in cells)
    return (f'<tr class="kernel-row" id="row-{view.index}" data-index="{view.index}" '
            f'data-kernel="{_e(launch.name)}">{tds}</tr>')


def _share_cell(share) -> str:
    if share is None:
        return "&ndash;"
    return (f'<span class="bar" style="width:{share * 100:.1f}px"></span> '
            f"{share * 100:.1f}%")


def _ops_summary(view) -> str:
    ops = [n.op for n in view.nodes] or [op.split(" # ")[0] for op in view.kernel.ops]
    return " ".join(dict.fromkeys(ops))


def _kernel_details(views, names, labels) -> str:
    articles = "".join(_kernel_article(view, names, labels) for view in views)
    return _section("sources", "Kernels in detail", articles)


def _kernel_article(view, names, labels) -> str:
    """A kernel's geometry, buffers, equations with the user's lines, and OpenCL source."""
    launch = view.launch
    local = "x".join(map(str, launch.local_size)) if launch.local_size else "-"
    meta = (f"global {'x'.join(map(str, launch.global_size))} &middot; local {local} "
            f"&middot; {launch.flops} flops &middot; reads {launch.bytes_read} B &middot; "
            f"writes {launch.bytes_written} B")
    io = (f"reads {_e(', '.join(labels.get(b, b) for b in view.reads) or '-')} &middot; "
          f"writes {_e(', '.join(labels.get(b, b) for b in view.writes) or '-')}")
    ops = "\n".join(equation_lines(view, names))
    return (f'<article class="kernel" id="kernel-{view.index}">'
            f"<h3>#{view.index} <code>{_e(launch.name)}</code></h3>"
            f'<p class="meta">{meta}</p><p class="meta">{io}</p>'
            f'<pre class="ops" id="ops-{view.index}">{_e(ops)}</pre>'
            f"<details open><summary>OpenCL source</summary>"
            f'<pre class="source" id="source-{view.index}">{_e(view.kernel.source)}</pre>'
            f"</details></article>")


def _pass_table(records) -> str:
    head = ("<tr><th>pass</th><th>ms</th><th>changed</th><th>nodes before</th>"
            "<th>nodes after</th><th>rule hits</th></tr>")
    rows = []
    for r in records:
        hits = ", ".join(f"{k}={v}" for k, v in sorted(r.hits.items())) or "&ndash;"
        rows.append(f'<tr class="pass-row"><td>{_e(r.name)}</td><td>{r.seconds * 1e3:.2f}</td>'
                    f"<td>{'yes' if r.changed else 'no'}</td><td>{r.nodes_before}</td>"
                    f"<td>{r.nodes_after}</td><td>{_e(hits) if r.hits else hits}</td></tr>")
    return _section("passes", "Passes", f'<table id="pass-table"><thead>{head}</thead>'
                                        f'<tbody>{"".join(rows)}</tbody></table>')


def _buffer_section(compiled, names) -> str:
    labels = buffer_labels(compiled)
    lines = buffer_lines(compiled, names, labels)
    rows = []
    for spec, line in zip(compiled.plan.buffers, lines[1:]):
        values = line.split(" B", 1)[1].strip() if " B" in line else ""
        rows.append(f'<tr class="buffer-row"><td><code>{_e(labels[spec.name])}</code></td>'
                    f"<td>{spec.role}</td><td>{spec.nbytes}</td><td>{_e(values)}</td></tr>")
    head = "<tr><th>buffer</th><th>role</th><th>bytes</th><th>values held</th></tr>"
    table = (f'<table id="buffer-table" class="sortable"><thead>{head}</thead>'
             f'<tbody>{"".join(rows)}</tbody></table>')
    return _section("buffers", "Buffers", f'<p id="peak">{_e(lines[-1])}</p>{table}')


def _ir_section(obj, compiled) -> str:
    parts = []
    if hasattr(obj, "compiled"):
        parts.append(_details("graph as built", "ir-graph", str(graph_of(obj, "graph"))))
    parts.append(_details("optimized graph", "ir-optimized", str(compiled.graph)))
    name = getattr(obj, "name", "function")
    parts.append(_details("kernels", "ir-kernels", format_kernels(compiled, name)))
    return _section("ir", "IR", "".join(parts))


def _details(title: str, ident: str, text: str) -> str:
    return f'<details><summary>{title}</summary><pre id="{ident}">{_e(text)}</pre></details>'


def _section(ident: str, title: str, content: str) -> str:
    return f'<section id="{ident}"><h2>{title}</h2>{content}</section>'


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


def _page(title: str, summary: str, sections: list[str]) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
            f"<header><h1>{_e(title)}</h1>{summary}</header>"
            f"<main>{''.join(sections)}</main><script>{JS}</script></body></html>\n")


CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#fafbfc}
header{padding:14px 24px;background:#20304a;color:#fff}header h1{margin:0;font-size:20px}
.meta{color:#5a6478;margin:4px 0}header .meta{color:#c9d4e8}
main{padding:8px 24px 40px}section{margin:18px 0}h2{border-bottom:1px solid #d8dde6}
.graph{overflow:auto;max-height:80vh;border:1px solid #d8dde6;background:#fff}
.graph svg{max-width:none}g.cluster.hl polygon,g.cluster.hl path{stroke:#d33;stroke-width:3}
table{border-collapse:collapse;background:#fff}th,td{border:1px solid #d8dde6;padding:3px 8px;
text-align:right}td:nth-child(2),td:last-child{text-align:left}th{background:#eef1f6;cursor:pointer}
tr.hl td{background:#fff3c4}.bar{display:inline-block;height:8px;background:#4a8a4a}
pre{background:#f3f5f8;border:1px solid #d8dde6;padding:8px;overflow:auto;font-size:12px}
article.kernel{border-left:3px solid #4a8a4a;padding-left:12px;margin:16px 0}
.warn{color:#a40}
"""

JS = """
(function(){
  var clusters={};
  document.querySelectorAll('#graph g.cluster').forEach(function(g){
    var t=g.querySelector('title'); if(t) clusters[t.textContent]=g;});
  function find(name){return clusters['cluster_'+name];}
  document.querySelectorAll('tr.kernel-row').forEach(function(row){
    var g=find(row.dataset.kernel);
    function on(x){row.classList.toggle('hl',x); if(g) g.classList.toggle('hl',x);}
    row.addEventListener('mouseenter',function(){on(true);});
    row.addEventListener('mouseleave',function(){on(false);});
    if(g){g.addEventListener('click',function(){
      document.getElementById('kernel-'+row.dataset.index).scrollIntoView();});}
  });
  document.querySelectorAll('table.sortable th').forEach(function(th,col){
    th.addEventListener('click',function(){
      var body=th.closest('table').tBodies[0], rows=Array.from(body.rows);
      var dir=th.dataset.dir==='asc'?-1:1; th.dataset.dir=dir>0?'asc':'desc';
      function key(r){var s=r.cells[col].textContent, n=parseFloat(s);
        return isNaN(n)?s:n;}
      rows.sort(function(a,b){var x=key(a),y=key(b);return (x>y?1:x<y?-1:0)*dir;});
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
})();
"""
