"""Theano's graph substitution: gc.clone(outputs, replace) and gc.function(givens=...).

    idx = gc.placeholder((64,), gc.int32, name="idx")
    step = gc.function([idx], loss, updates=..., givens={x: gc.take(data, idx, axis=0)})

`replace` maps tensors of the graph to tensors of the same shape and dtype; the outputs are
rebuilt above the replaced tensors (the replacements themselves are taken as they are, so a
replacement may use the tensor it replaces). Nothing is changed in place: the original
outputs still compute what they did. Substitution happens when the function is built, so
the compiled program is the one the substituted graph would have given written by hand.
"""
from __future__ import annotations

from graphc.builder import as_tensor
from graphc.errors import DTypeError, GraphcError, ShapeError
from graphc.ir import Tensor
from graphc.rewrite import remake


def replacement_pairs(replace) -> list[tuple[Tensor, Tensor]]:
    """`replace` (a dict or (old, new) pairs) checked: old a tensor, new of its type."""
    pairs = list(replace.items()) if isinstance(replace, dict) else list(replace or [])
    checked = []
    for pair in pairs:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise GraphcError(f"givens / replace takes {{old: new}} or (old, new) pairs, got "
                              f"{pair!r}")
        old, new = pair
        if not isinstance(old, Tensor):
            raise GraphcError(f"givens / replace: {old!r} is not a graphc tensor")
        new = as_tensor(new, old.dtype)
        where = f"\n  replaced tensor created at {old.site}" if old.site else ""
        if new.shape != old.shape:
            raise ShapeError(f"givens / replace: {_label(old)} has shape {old.shape}, its "
                             f"replacement {new.shape}{where}")
        if new.dtype != old.dtype:
            raise DTypeError(f"givens / replace: {_label(old)} is {old.dtype.name}, its "
                             f"replacement {new.dtype.name} (cast it){where}")
        checked.append((old, new))
    if len({id(old) for old, _ in checked}) != len(checked):
        raise GraphcError("givens / replace: a tensor is replaced twice")
    return checked


def _label(tensor: Tensor) -> str:
    return f"{tensor.name!r}" if tensor.name else f"the {tensor.op} value {tensor.type}"


def clone(outputs, replace):
    """`outputs` (a tensor or a list) rebuilt with the tensors of `replace` substituted."""
    single = isinstance(outputs, Tensor)
    values = [outputs] if single else list(outputs)
    mapping = {id(old): new for old, new in replacement_pairs(replace)}
    rebuilt = substitute(values, mapping)
    return rebuilt[0] if single else rebuilt


def substitute(values: list[Tensor], mapping: dict[int, Tensor]) -> list[Tensor]:
    """`values` rebuilt over `mapping` (id of an old tensor -> its replacement)."""
    env = dict(mapping)
    for node in _nodes_above(values, mapping):
        inputs = tuple(env.get(id(v), v) for v in node.inputs)
        if any(a is not b for a, b in zip(inputs, node.inputs)):
            for old, new in zip(node.outputs, remake(node, inputs).outputs):
                env[id(old)] = new
    return [env.get(id(v), v) for v in values]


def _nodes_above(values: list[Tensor], stop: dict[int, Tensor]) -> list:
    """The nodes `values` depend on, not looking below replaced tensors, in an order that
    defines inputs first (iterative post-order)."""
    order, seen = [], set()
    stack = [(v, False) for v in reversed(values)]
    while stack:
        value, expanded = stack.pop()
        node = value.producer
        if node is None or id(value) in stop:
            continue
        if expanded:
            if id(node) not in seen:
                seen.add(id(node))
                order.append(node)
            continue
        if id(node) in seen:
            continue
        stack.append((value, True))
        stack.extend((v, False) for v in reversed(node.inputs)
                     if v.producer is not None and id(v.producer) not in seen)
    return order
