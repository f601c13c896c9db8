"""The HTML report: opened in headless Chromium, it shows the graph as SVG with a cluster per
kernel, one table row per kernel, each kernel's source; GRAPHC_DUMP and `graphc dump`.
"""
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.inspection import debug
from graphc.cli import main
from graphc.inspection.dump import dump
from graphc.inspection.report import html_page, report, report_html

pytestmark = pytest.mark.opencl
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)


class Page(HTMLParser):
    """Text by element id, table rows (attributes and cell texts) by table id, SVG cluster
    titles, and whether an <svg> sits inside the element with id "graph"."""

    def __init__(self, text: str):
        super().__init__()
        self.text, self.rows, self.clusters = {}, {}, []
        self.svg_in_graph = False
        self.open: list[tuple[str, dict]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("meta", "br", "img", "input", "link"):
            return
        self.open.append((tag, attrs))
        if "id" in attrs:
            self.text[attrs["id"]] = ""
        if tag == "svg" and any(a.get("id") == "graph" for _, a in self.open):
            self.svg_in_graph = True
        if tag == "tr":
            table = next((a.get("id") for t, a in reversed(self.open) if t == "table"), None)
            self.rows.setdefault(table, []).append({"attrs": attrs, "cells": []})
        if tag in ("td", "th"):
            table = next((a.get("id") for t, a in reversed(self.open) if t == "table"), None)
            self.rows[table][-1]["cells"].append("")

    def handle_endtag(self, tag):
        while self.open:
            if self.open.pop()[0] == tag:
                break

    def handle_data(self, data):
        for _, attrs in self.open:
            if "id" in attrs:
                self.text[attrs["id"]] += data
        cell = next((i for i, (t, _) in enumerate(reversed(self.open)) if t in ("td", "th")), None)
        if cell is not None:
            table = next(a.get("id") for t, a in reversed(self.open) if t == "table")
            self.rows[table][-1]["cells"][-1] += data
        if len(self.open) > 1 and self.open[-1][0] == "title" \
                and self.open[-2][1].get("class") == "cluster":
            self.clusters.append(data)


def training_step(device, name="train_step"):
    rng = np.random.default_rng(1)
    x = gc.placeholder((16, 8), gc.float32, name="x")
    y = gc.placeholder((16,), gc.int32, name="y")
    W = gc.variable(rng.standard_normal((8, 4)).astype(np.float32) * 0.3, name="W")
    b = gc.variable(np.zeros(4, np.float32), name="b")
    loss = gc.mean(gc.losses.sparse_categorical_crossentropy(y, gc.relu(x @ W + b),
                                                             from_logits=True))
    gW, gb = gc.grad(loss, [W, b])
    fn = gc.function([x, y], [loss], updates=[(W, W - 0.1 * gW), (b, b - 0.1 * gb)],
                     device=device, name=name)
    feeds = [rng.standard_normal((16, 8)).astype(np.float32), rng.integers(0, 4, 16, np.int32)]
    return fn, feeds, W


@pytest.fixture
def step(cl_device):
    return training_step(cl_device)


def check_report_dom(dom: str, fn) -> None:
    """The SVG graph with every kernel's cluster; a row, the ops with their lines and the
    source of every kernel; the passes; the buffers and the peak."""
    page = Page(dom)
    kernels = fn.compiled.kernels
    assert page.svg_in_graph
    assert page.clusters == [f"cluster_{k.name}" for k in kernels]
    rows = page.rows["kernels"][1:]                     # after the header row
    assert [r["attrs"]["data-kernel"] for r in rows] == [k.name for k in kernels]
    assert [r["cells"][1] for r in rows] == [k.name for k in kernels]
    for i, kernel in enumerate(kernels):
        assert f"__kernel void {kernel.name}(" in page.text[f"source-{i}"]
        for op in kernel.ops:
            name, site = op.split(" # ")
            assert f" = {name}" in page.text[f"ops-{i}"] and f"# {site}" in page.text[f"ops-{i}"]
    assert len(page.rows["pass-table"]) == len(fn.compiled.pass_records) + 1
    assert len(page.rows["buffer-table"]) == len(fn.compiled.plan.buffers) + 1
    assert page.text["peak"].startswith("planned peak memory: ")


def dump_dom(path: Path) -> str:
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                           "--dump-dom", path.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz not installed")
def test_report_opens_in_chromium_with_graph_kernel_rows_and_sources(step, tmp_path):
    fn, feeds, _ = step
    path = report(fn, feeds, tmp_path / "report.html")
    dom = dump_dom(path)
    check_report_dom(dom, fn)
    page = Page(dom)
    times = [float(r["cells"][2]) for r in page.rows["kernels"][1:]]
    shares = [float(r["cells"][5].strip().rstrip("%")) for r in page.rows["kernels"][1:]]
    assert all(t >= 0 for t in times) and sum(shares) == pytest.approx(100, abs=0.5)
    assert " ms on the device" in page.text["summary"]


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz not installed")
def test_report_html_has_every_part_without_a_browser(step):
    fn, feeds, _ = step
    check_report_dom(report_html(fn, None), fn)


def test_report_is_self_contained(step, tmp_path):
    fn, feeds, _ = step
    text = report(fn, feeds, tmp_path / "r.html").read_text()
    assert "http://" not in text.replace("http://www.w3.org", "")
    assert "https://" not in text and "<link" not in text and " src=" not in text


def test_report_leaves_variables_and_call_count_alone(step, tmp_path):
    fn, feeds, W = step
    before = W.get_value()
    report(fn, {"x": feeds[0], "y": feeds[1]}, tmp_path / "r.html")
    assert np.array_equal(W.get_value(), before) and fn.calls == 0
    fn(*feeds)
    assert not np.array_equal(W.get_value(), before)


def test_report_without_feeds_says_it_is_not_timed(step):
    fn, _, _ = step
    assert "not timed: pass feeds to gc.report" in report_html(fn)
    assert dump(fn, format="html").startswith("<!DOCTYPE html>")


def test_html_page_of_a_graph():
    x = gc.placeholder((3,), gc.float32, name="x")
    page = Page(html_page(gc.exp(x) + 1.0, "graph"))
    assert "= exp x" in page.text["ir-graph"]


def test_graphc_dump_env_writes_a_report_per_function_then_times_it(step, tmp_path,
                                                                      monkeypatch):
    fn, feeds, W = step
    monkeypatch.setenv("GRAPHC_DUMP", str(tmp_path))
    debug.on_function_compiled(fn)
    (html,) = tmp_path.glob("*_train_step.html")
    assert "not timed" in html.read_text()
    assert html.with_suffix(".txt").read_text().startswith("=== graph ===\ngraph train_step(")
    before = W.get_value()
    results = debug.on_function_called(fn, fn._check_feeds(feeds))
    assert results is not None and np.isfinite(results[0])
    assert not np.array_equal(W.get_value(), before), "the profiled run is the call itself"
    assert "not timed" not in html.read_text()
    assert debug.on_function_called(fn, fn._check_feeds(feeds)) is None


SCRIPT = """
import sys
import numpy as np
import graphc as gc
x = gc.placeholder((4, 3), gc.float32, name="x")
w = gc.variable(np.ones((3, 2), np.float32), name="w")
predict = gc.function([x], [gc.tanh(x @ w)], name="predict")
predict(np.ones((4, 3), np.float32))
loss = gc.sum(gc.square(x @ w))
train = gc.function([x], [loss], updates=[(w, w - 0.01 * gc.grad(loss, w))], name="train")
train(np.ones((4, 3), np.float32))
print("script args", sys.argv[1:])
"""


def test_graphc_dump_command_writes_one_report_per_function(tmp_path, capsys, cl_device):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    out = tmp_path / "reports"
    assert main(["dump", str(script), "--out", str(out), "--", "--epochs", "1"]) == 0
    printed = capsys.readouterr().out
    assert "script args ['--epochs', '1']" in printed
    names = sorted(p.name.split("_", 1)[1] for p in out.glob("*.html"))
    assert names == ["predict.html", "train.html"]
    assert f"graphc dump: 2 report(s) in {out}" in printed


def test_graphc_dump_passes_the_script_exit_status(tmp_path):
    script = tmp_path / "fails.py"
    script.write_text("import sys\nsys.exit(3)\n")
    assert main(["dump", str(script), "--out", str(tmp_path / "r")]) == 3


def test_graphc_dump_runs_from_the_command_line(tmp_path, cl_device):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, "-m", "graphc", "dump", str(script), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "out").glob("*.html"))) == 2
