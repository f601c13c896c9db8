"""gc.gradcheck: symbolic gradients against central finite differences, in float64."""
from __future__ import annotations

import numpy as np

from graphc.autodiff import grad
from graphc.builder import constant, placeholder
from graphc.interp import evaluate
from graphc.ir import Graph
from graphc.ops.reduction import sum as reduce_sum


def gradcheck(fn, inputs, eps: float = 1e-6, seed: int = 0):
    """Worst relative error between gc.grad and finite differences, and where it happened.

    `fn(*tensors)` builds a float output from float64 placeholders shaped like `inputs`;
    the output is projected on a random direction u (cost = sum(u * fn(...))) so every
    output element takes part. Returns (error, (input_index, element_index)); the relative
    error is |symbolic - numeric| / max(1, |symbolic|, |numeric|).
    """
    arrays = [np.array(a, dtype=np.float64) for a in inputs]
    tensors = [placeholder(a.shape, np.float64, name=f"in{i}") for i, a in enumerate(arrays)]
    out = fn(*tensors)
    direction = np.random.default_rng(seed).standard_normal(out.shape)
    cost = reduce_sum(out * constant(direction, np.float64))
    grads = grad(cost, tensors, disconnected="zero")
    graph = Graph.from_outputs([cost, *grads], inputs=tensors)
    symbolic = evaluate(graph, dict(zip(tensors, arrays)))[1:]
    cost_graph = Graph.from_outputs([cost], inputs=tensors)
    worst = (0.0, None)
    for index, (array, analytic) in enumerate(zip(arrays, symbolic)):
        numeric = _finite_differences(cost_graph, tensors, arrays, index, eps)
        error, where = _worst(analytic, numeric)
        if error >= worst[0]:
            worst = (error, (index, where))
    return worst


def _finite_differences(graph, tensors, arrays, index, eps) -> np.ndarray:
    """Central differences of the scalar cost by every element of input `index`."""
    base = arrays[index]
    numeric = np.zeros_like(base)
    for flat in range(base.size):
        values = []
        for sign in (1, -1):
            shifted = base.copy()
            shifted.flat[flat] += sign * eps
            feeds = dict(zip(tensors, arrays[:index] + [shifted] + arrays[index + 1:]))
            values.append(float(evaluate(graph, feeds)[0]))
        numeric.flat[flat] = (values[0] - values[1]) / (2 * eps)
    return numeric


def _worst(analytic: np.ndarray, numeric: np.ndarray) -> tuple[float, int | None]:
    if analytic.size == 0:
        return 0.0, None
    scale = np.maximum(1.0, np.maximum(np.abs(analytic), np.abs(numeric)))
    errors = np.abs(analytic - numeric) / scale
    errors = np.where(np.isnan(errors), np.inf, errors)
    flat = int(np.argmax(errors))
    return float(errors.flat[flat]), flat
