"""A TensorBoard-like event log that needs no TensorBoard: JSON lines plus one
self-contained HTML page of the curves.

    model.fit(..., callbacks=[gc.nn.callbacks.TensorBoard("logs/run1")])
    # open logs/run1/index.html in a browser (rewritten after every epoch)

`events.jsonl` holds one object per line: {"kind": "epoch" | "batch", "step", "epoch",
"wall_time", "values": {name: number}}. `render(log_dir)` (or `python -m
graphc.nn.eventlog LOG_DIR`) writes `index.html` from it: one SVG chart per quantity, the
training curve and its `val_` twin together, drawn on the host without scripts or
downloads, so the page opens anywhere.
"""
from __future__ import annotations

import html
import json
import math
import os
import sys
import time

from graphc.nn.callbacks import Callback

EVENTS = "events.jsonl"
PAGE = "index.html"
WIDTH, HEIGHT, PAD = 420, 240, 44
COLORS = {"train": "#1f77b4", "validation": "#d62728"}


class TensorBoard(Callback):
    """Log the epoch logs (and, with update_freq='batch' or N, every N batches' running
    logs) to `log_dir`/events.jsonl and redraw `log_dir`/index.html after each epoch."""

    def __init__(self, log_dir="logs", update_freq="epoch", histogram_freq: int = 0,
                 write_graph: bool = True, write_images: bool = False, profile_batch=0,
                 embeddings_freq: int = 0):
        super().__init__()
        unsupported = {"histogram_freq": histogram_freq, "write_images": write_images,
                       "profile_batch": profile_batch, "embeddings_freq": embeddings_freq}
        asked = [k for k, v in unsupported.items() if v]
        if asked:
            raise ValueError(f"TensorBoard: graphc logs scalars only; {', '.join(asked)} is "
                             f"not supported")
        if update_freq not in ("epoch", "batch") and not (isinstance(update_freq, int) and
                                                          update_freq > 0):
            raise ValueError(f"TensorBoard: update_freq is 'epoch', 'batch' or a positive "
                             f"int, got {update_freq!r}")
        self.log_dir = os.fspath(log_dir)
        self.every = None if update_freq == "epoch" else 1 if update_freq == "batch" \
            else int(update_freq)
        self.write_graph = write_graph
        self.step = 0
        self.epoch = 0

    def on_train_begin(self, logs=None):
        os.makedirs(self.log_dir, exist_ok=True)
        self.step = int(self.model.optimizer.iterations.get_value()) \
            if getattr(self.model, "optimizer", None) is not None else 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.every and self.step % self.every == 0:
            self._write("batch", logs)

    def on_epoch_end(self, epoch, logs=None):
        self._write("epoch", logs)
        summary = None
        if self.write_graph:
            try:
                summary = self.model.summary(print_fn=lambda text: None)
            except RuntimeError:
                summary = None
        render(self.log_dir, summary)

    def _write(self, kind: str, logs) -> None:
        values = {k: float(v) for k, v in (logs or {}).items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool)}
        event = {"kind": kind, "step": self.step, "epoch": self.epoch,
                 "wall_time": time.time(), "values": values}
        with open(os.path.join(self.log_dir, EVENTS), "a", encoding="utf-8") as out:
            out.write(json.dumps(_finite(event)) + "\n")


def _finite(event: dict) -> dict:
    """NaN and infinities as strings: JSON has no numbers for them."""
    event["values"] = {k: (v if math.isfinite(v) else str(v)) for k, v in
                       event["values"].items()}
    return event


def read_events(log_dir) -> list[dict]:
    """The events of `log_dir`, oldest first (a torn last line is skipped)."""
    path = os.path.join(os.fspath(log_dir), EVENTS)
    events = []
    with open(path, encoding="utf-8") as source:
        for line in source:
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events


def _series(events: list[dict], kind: str) -> dict[str, list[tuple[float, float]]]:
    """{name: [(x, value)]}: epochs (1-based) for epoch events, steps for batch events."""
    series: dict[str, list[tuple[float, float]]] = {}
    for event in events:
        if event.get("kind") != kind:
            continue
        x = event["epoch"] + 1 if kind == "epoch" else event["step"]
        for name, value in event.get("values", {}).items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                series.setdefault(name, []).append((float(x), float(value)))
    return series


def _chart(title: str, lines: dict[str, list[tuple[float, float]]], x_label: str) -> str:
    """An SVG line chart of `lines` ({legend: points}) with min/max labels."""
    points = [p for line in lines.values() for p in line]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1

    def at(x, y):
        return (PAD + (x - x0) / (x1 - x0) * (WIDTH - 2 * PAD),
                HEIGHT - PAD - (y - y0) / (y1 - y0) * (HEIGHT - 2 * PAD))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'role="img"><title>{html.escape(title)}</title>',
             f'<rect x="{PAD}" y="{PAD}" width="{WIDTH - 2 * PAD}" '
             f'height="{HEIGHT - 2 * PAD}" fill="none" stroke="#999"/>',
             f'<text x="{PAD}" y="{PAD - 8}" font-size="13">{html.escape(title)}</text>',
             f'<text x="4" y="{PAD + 4}" font-size="10">{y1:.4g}</text>',
             f'<text x="4" y="{HEIGHT - PAD}" font-size="10">{y0:.4g}</text>',
             f'<text x="{PAD}" y="{HEIGHT - PAD + 14}" font-size="10">{x0:g}</text>',
             f'<text x="{WIDTH - PAD - 20}" y="{HEIGHT - PAD + 14}" font-size="10">{x1:g}'
             f'</text>',
             f'<text x="{WIDTH / 2 - 15}" y="{HEIGHT - 8}" font-size="10">{x_label}</text>']
    for i, (legend, line) in enumerate(lines.items()):
        color = COLORS.get(legend, "#2ca02c")
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in (at(*p) for p in line))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" '
                     f'points="{path}"><title>{html.escape(legend)}</title></polyline>')
        parts.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}"/>'
                     for x, y in (at(*p) for p in line))
        parts.append(f'<text x="{WIDTH - PAD - 70}" y="{PAD + 14 + 13 * i}" font-size="11" '
                     f'fill="{color}">{html.escape(legend)}: {line[-1][1]:.4g}</text>')
    return "".join(parts) + "</svg>"


def _charts(series: dict, x_label: str) -> list[str]:
    names = sorted({name[4:] if name.startswith("val_") else name for name in series})
    charts = []
    for name in names:
        lines = {label: series[key] for label, key in (("train", name),
                                                       ("validation", f"val_{name}"))
                 if key in series}
        charts.append(_chart(name, lines, x_label))
    return charts


def render(log_dir, summary: str | None = None) -> str:
    """Write `log_dir`/index.html from events.jsonl; returns its path."""
    log_dir = os.fspath(log_dir)
    events = read_events(log_dir)
    epochs, batches = _series(events, "epoch"), _series(events, "batch")
    body = [f"<h1>{html.escape(log_dir)}</h1>",
            f"<p>{sum(e.get('kind') == 'epoch' for e in events)} epochs logged; last "
            f"update {time.strftime('%Y-%m-%d %H:%M:%S')}</p>"]
    body += ["<h2>Per epoch</h2>", *_charts(epochs, "epoch")] if epochs else []
    body += ["<h2>Per batch (running epoch values)</h2>", *_charts(batches, "step")] \
        if batches else []
    if summary:
        body.append(f"<h2>Model</h2><pre>{html.escape(summary)}</pre>")
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>graphc training log"
            "</title><style>body{font-family:sans-serif} svg{margin:6px}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")
    path = os.path.join(log_dir, PAGE)
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as out:
        out.write(page)
    os.replace(temporary, path)              # a browser never reads a half-written page
    return path


if __name__ == "__main__":                   # python -m graphc.nn.eventlog LOG_DIR
    if len(sys.argv) != 2:
        sys.exit("usage: python -m graphc.nn.eventlog LOG_DIR")
    print(render(sys.argv[1]))
