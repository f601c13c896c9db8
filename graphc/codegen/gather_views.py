"""Strided views of a buffer as gathered GEMM operands: matmuls read them without a copy.

Attention moves its heads next to the batch, (batch, steps, heads * dim) -> (batch * heads,
steps, dim), a reshape and a transpose of the projections that no layout flag describes;
and moves them back after the value product. Without this, each of those views is copied by
a kernel of its own before the matmul reads it. Here a chain of reshapes and transposes
down to a buffer becomes a `Gather`: element (batch, r, c) of the operand lies at
base(batch) + row(r) + col(c) of the buffer, each part a sum of mixed-radix digits of its
index times their strides (the rows of a weight gradient's operand, batch * steps, are two
such digits).

The offsets are found by replaying the chain on numpy's index array of the buffer and then
checked exactly against the formula, so a view the formula does not describe is refused
(the operand is then copied as before), never read wrong.
"""
from __future__ import annotations

import numpy as np

from graphc.codegen.gemm_gather import Gather
from graphc.ir import Tensor

MOVES = ("reshape", "transpose")
MAX_ELEMENTS = 1 << 22       # index arrays replayed at compile time (int64: 32 MiB at most)


def movement_root(t: Tensor, is_buffer) -> tuple[Tensor, list] | None:
    """(the value under a chain of reshapes and transposes, the chain's nodes from it up),
    or None when `t` is no such chain. The root need not be a buffer yet (fuse stores it)."""
    chain = []
    while not is_buffer(t) and t.producer is not None and t.producer.op in MOVES:
        chain.append(t.producer)
        t = t.producer.inputs[0]
    return (t, chain[::-1]) if chain else None


def strided_gather(t: Tensor, is_buffer, operand: str = "a") -> tuple[Tensor, Gather] | None:
    """(buffer tensor, Gather) reading matmul operand `t` (batch dims flattened) from the
    buffer under its reshapes and transposes, or None. For B (`operand` 'b'), runs of
    consecutive columns (or rows) are marked for the CPU template's vector loads."""
    found = movement_root(t, is_buffer)
    if found is None or t.ndim < 2 or found[0].size > MAX_ELEMENTS or t.size == 0:
        return None
    root, chain = found
    if not is_buffer(root):
        return None
    offsets = _replay(np.arange(root.size, dtype=np.int64).reshape(root.shape), chain)
    table = offsets.reshape((-1,) + t.shape[-2:])
    origin = table[0, 0, 0]
    bases, rows, cols = table[:, 0, 0], table[0, :, 0] - origin, table[0, 0, :] - origin
    if not np.array_equal(table, bases[:, None, None] + rows[None, :, None]
                          + cols[None, None, :]):
        return None                 # not separable into batch, row and column parts
    parts = [mixed_radix(values, name) for values, name
             in ((bases, "batch_"), (rows, "r"), (cols, "c"))]
    if None in parts:
        return None
    runs = {}
    if operand == "b":
        runs = {"run": _run(cols), "krun": _run(rows)}
        runs = {key: value for key, value in runs.items() if value % 4 == 0}
    return root, Gather(parts[0], (parts[1], "0", "0"), (parts[2], "0", "0"), **runs)


def _run(values: np.ndarray) -> int:
    """Length of the runs of consecutive positions (one more per index) the values come
    in, from multiples of it; 0 when they are not."""
    steps = np.diff(values)
    length = len(values) if np.all(steps == 1) else int(np.argmax(steps != 1)) + 1
    if length == 1:
        return 0
    blocks = values[:len(values) - len(values) % length].reshape(-1, length)
    if len(values) % length or not np.all(np.diff(blocks, axis=1) == 1):
        return 0
    return length


def _replay(index: np.ndarray, chain: list) -> np.ndarray:
    """The chain's reshapes and transposes applied to the buffer's index array."""
    for node in chain:
        if node.op == "reshape":
            index = np.reshape(index, node.outputs[0].shape)
        else:
            index = np.transpose(index, node.attrs["perm"])
    return index


def mixed_radix(values: np.ndarray, index: str = "batch_") -> str | None:
    """A C expression of the int `index` giving values[index]: digits of the index (each a
    run of equally spaced values) times their strides; None when no such form fits."""
    terms, divisor, level = [], 1, np.asarray(values, np.int64)
    first = int(level[0])
    while len(level) > 1:
        stride = int(level[1] - level[0])
        steps = np.arange(len(level)) * stride
        length = int(np.argmax(level - level[0] != steps)) or len(level)
        if len(level) % length:
            return None
        blocks = level.reshape(-1, length)
        if not np.array_equal(blocks - blocks[:, :1], np.broadcast_to(steps[:length],
                                                                        blocks.shape)):
            return None
        terms.append((divisor, length, stride, len(level) == length))
        divisor, level = divisor * length, blocks[:, 0]
    parts = [str(first)] * bool(first) + [_digit(index, d, n, s, last)
                                          for d, n, s, last in terms if s]
    check = np.full(len(values), first, np.int64)
    for d, n, s, last in terms:
        check += (np.arange(len(values)) // d % (len(values) if last else n)) * s
    if not np.array_equal(check, values):
        return None
    return " + ".join(parts) or "0"


def _digit(index: str, divisor: int, length: int, stride: int, last: bool) -> str:
    """C text of (index / divisor % length) * stride, without the needless parts."""
    digit = index if divisor == 1 else f"({index} / {divisor})"
    if not last:
        digit = f"({digit} % {length})"
    return digit if stride == 1 else f"{digit} * {stride}"
