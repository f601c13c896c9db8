"""Reverse-mode autodiff as a graph-to-graph transform: gc.grad, gc.jacobian, gc.hessian.

The backward pass is built from ordinary graph nodes (each op's `vjp` rule calls the public
API), so it can be printed, fused with the forward pass, and differentiated again. Each
backward node carries the file:line of the forward op it differentiates.
"""
from __future__ import annotations

from functools import reduce

import numpy as np

from graphc import dtypes
from graphc.builder import as_tensor, cast
from graphc.errors import DisconnectedError, GraphcError, NonDifferentiableError, ShapeError
from graphc.ir import Graph, Node, Tensor
from graphc.math import add, zeros, zeros_like
from graphc.ops.registry import get_op
from graphc.ops.movement import reshape, stack
from graphc.ops.reduction import sum as reduce_sum
from graphc.shapes import broadcast_axes
from graphc.sites import site_of, user_site


def grad(cost, wrt, grad_outputs=None, disconnected: str = "raise"):
    """Symbolic gradient of `cost` with respect to `wrt` (a tensor or a list: same structure back).

    `cost` is a scalar, or a list of tensors with `grad_outputs` (their cotangents).
    `disconnected="zero"` returns zeros for a `wrt` the cost does not depend on.
    """
    if disconnected not in ("raise", "zero"):
        raise ValueError(f"disconnected must be 'raise' or 'zero', got {disconnected!r}")
    wrt_list = [wrt] if isinstance(wrt, Tensor) else list(wrt)
    costs, seeds = _seed_cotangents(cost, grad_outputs)
    for target in wrt_list:
        _require_float(target, "wrt")
        _require_differentiable_source(target)
    cotangents = backpropagate(costs, seeds, wrt_list)
    grads = [_gradient_of(t, cotangents, disconnected) for t in wrt_list]
    return grads[0] if isinstance(wrt, Tensor) else grads


def backpropagate(costs, seeds, wrt) -> dict[Tensor, list[Tensor]]:
    """Walk the nodes between `wrt` and `costs` backwards, collecting cotangents per value."""
    graph = Graph.from_outputs(costs)
    live = _depends_on(graph, set(wrt))
    cotangents: dict[Tensor, list[Tensor]] = {}
    for c, s in zip(costs, seeds):
        cotangents.setdefault(c, []).append(s)
    for node in reversed(graph.nodes):
        out = node.outputs[0]
        if out not in cotangents or not any(v in live for v in node.inputs):
            continue
        for value, g in zip(node.inputs, _input_cotangents(node, _total(cotangents[out]))):
            if g is not None and value in live:
                cotangents.setdefault(value, []).append(g)
    return cotangents


def _input_cotangents(node: Node, g: Tensor) -> list:
    """Call the op's vjp rule, then sum each cotangent back to its input's shape and dtype."""
    opdef = get_op(node.op)
    if not opdef.differentiable:
        raise NonDifferentiableError(
            f"cannot differentiate through {node.op} ({opdef.vjp.reason}), created at "
            f"{node.site or '<unknown>'}")
    with site_of(node.site):
        raw = opdef.vjp(g, node.outputs[0], *node.inputs, **node.attrs)
        return [None if gi is None or not dtypes.is_float(x.dtype) else sum_to(gi, x)
                for gi, x in zip(raw, node.inputs)]


def sum_to(g: Tensor, like: Tensor) -> Tensor:
    """Undo broadcasting, in one place for every op: sum `g` down to `like`'s shape and dtype."""
    if g.shape != like.shape:
        axes = broadcast_axes(like.shape, g.shape)
        g = reshape(reduce_sum(g, axis=axes), like.shape) if axes else reshape(g, like.shape)
    return cast(g, like.dtype)


def _depends_on(graph: Graph, wrt: set) -> set:
    """The float values of `graph` that depend on some tensor in `wrt` (including `wrt`)."""
    live = set(wrt)
    for node in graph.nodes:
        if any(v in live for v in node.inputs):
            live.update(o for o in node.outputs if dtypes.is_float(o.dtype))
    return live


def _total(parts: list[Tensor]) -> Tensor:
    return reduce(add, parts)


def _seed_cotangents(cost, grad_outputs):
    costs = [cost] if isinstance(cost, Tensor) else list(cost)
    for c in costs:
        _require_float(c, "cost")
    if grad_outputs is None:
        for c in costs:
            if c.size != 1:
                raise ShapeError(f"gc.grad needs a scalar cost, got {c.type} (pass grad_outputs="
                                 f" for a non-scalar cost), at {user_site()}")
        return costs, [as_tensor(np.ones(c.shape, c.dtype)) for c in costs]
    outs = [grad_outputs] if isinstance(grad_outputs, (Tensor, np.ndarray)) else grad_outputs
    seeds = [cast(as_tensor(g), c.dtype) for g, c in zip(outs, costs)]
    for g, c in zip(seeds, costs):
        if g.shape != c.shape:
            raise ShapeError(f"grad_outputs of shape {g.shape} for a cost of shape {c.shape},"
                             f" at {user_site()}")
    return costs, seeds


def _require_float(t: Tensor, what: str) -> None:
    if not isinstance(t, Tensor):
        raise GraphcError(f"gc.grad: {what} must be a tensor, got {type(t).__name__}")
    if not dtypes.is_float(t.dtype):
        raise NonDifferentiableError(
            f"gc.grad: {what} {t.name or t.op} has dtype {t.dtype.name}; only float tensors have"
            f" gradients (integer, boolean and random outputs are not differentiable),"
            f" at {user_site()}")


def _require_differentiable_source(t: Tensor) -> None:
    """A random draw is not a function of anything: a gradient by it means nothing."""
    if t.producer is not None and get_op(t.producer.op).kind == "random":
        raise NonDifferentiableError(
            f"gc.grad: {t.producer.op} (created at {t.site}) is a random output; random"
            f" outputs are not differentiable")


def _gradient_of(target: Tensor, cotangents: dict, disconnected: str) -> Tensor:
    if target in cotangents:
        return _total(cotangents[target])
    if disconnected == "zero":
        return zeros_like(target)
    raise DisconnectedError(
        f"the cost does not depend on {target.name or target.op} ({target.type}, created at "
        f"{target.site or '<unknown>'}); pass disconnected='zero' to get zeros (a dependence only"
        f" through integer or boolean values, such as argmax, carries no gradient)")


def jacobian(y: Tensor, x: Tensor) -> Tensor:
    """d y / d x of shape y.shape + x.shape, one gradient per element of y (for small y)."""
    flat = reshape(y, (y.size,))
    rows = [grad(flat[i], x, disconnected="zero") for i in range(y.size)]
    stacked = stack(rows) if rows else zeros((0,) + x.shape, x.dtype)
    return reshape(stacked, y.shape + x.shape)


def hessian(cost: Tensor, x: Tensor) -> Tensor:
    """Second derivatives of a scalar cost, of shape x.shape + x.shape."""
    return jacobian(grad(cost, x), x)
