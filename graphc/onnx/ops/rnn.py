"""ONNX LSTM, GRU and RNN, unrolled over the (static) sequence.

Gate layouts are ONNX's: LSTM weights stack the gates as i, o, f, c, GRU's as z, r, h; the
bias input holds the input biases then the recurrent ones. The input projection of every
step is one product before the loop; each step adds the recurrent product. Directions
forward, reverse and bidirectional; layout 0 (sequence first) and 1 (batch first);
initial states, LSTM peepholes, clip and the activations ONNX names.
"""
from __future__ import annotations

import numpy as np

import graphc as gc
from graphc.ir import Tensor
from graphc.onnx.ops.shape import axis_slice
from graphc.onnx.registry import NodeView, converter

RNN_ATTRS = ("activation_alpha", "activation_beta", "activations", "clip", "direction",
             "hidden_size", "layout")


def _activation(name: str, alpha, beta):
    table = {
        "Sigmoid": gc.sigmoid, "Tanh": gc.tanh, "Relu": gc.relu,
        "Affine": lambda x: alpha * x + beta,
        "LeakyRelu": lambda x: gc.where(x >= 0, x, alpha * x),
        "ThresholdedRelu": lambda x: gc.where(x > alpha, x, 0.0),
        "ScaledTanh": lambda x: alpha * gc.tanh(beta * x),
        "HardSigmoid": lambda x: gc.clip(alpha * x + beta, 0.0, 1.0),
        "Elu": lambda x: gc.where(x >= 0, x, alpha * (gc.exp(gc.minimum(x, 0.0)) - 1.0)),
        "Softsign": lambda x: x / (1.0 + gc.abs(x)),
        "Softplus": lambda x: gc.relu(x) + gc.log(1.0 + gc.exp(-gc.abs(x))),
    }
    return table.get(name)


_DEFAULT_ALPHA = {"LeakyRelu": 0.01, "ThresholdedRelu": 1.0, "HardSigmoid": 0.2, "Elu": 1.0,
                  "Affine": 1.0, "ScaledTanh": 1.0}
_DEFAULT_BETA = {"HardSigmoid": 0.5, "Affine": 0.0, "ScaledTanh": 1.0}


def _activations(node: NodeView, defaults: list[str], directions: int) -> list[list]:
    """Per direction, the activation functions the cell uses."""
    names = list(node.attr("activations") or defaults * directions)
    alphas = list(node.attr("activation_alpha") or [])
    betas = list(node.attr("activation_beta") or [])
    fns = []
    for i, name in enumerate(names):
        alpha = alphas[i] if i < len(alphas) else _DEFAULT_ALPHA.get(name, 0.0)
        beta = betas[i] if i < len(betas) else _DEFAULT_BETA.get(name, 0.0)
        fn = _activation(name, alpha, beta)
        if fn is None:
            raise node.unsupported(f"activation {name!r}")
        fns.append(fn)
    per = len(defaults)
    if len(fns) == per and directions == 2:
        fns = fns * 2
    return [fns[d * per:(d + 1) * per] for d in range(directions)]


def _sequence_first(node: NodeView, x: Tensor) -> Tensor:
    return gc.transpose(x, (1, 0, 2)) if node.attr("layout", 0) else x


def _state(node: NodeView, index: int, d: int, setup: "_Setup") -> Tensor:
    """Direction d's initial state (input `index`), zeros when it is absent."""
    s = node.input(index)
    if s is None:
        return setup.zero_state()
    s = gc.transpose(s, (1, 0, 2)) if node.attr("layout", 0) else s
    return s[d]


class _Setup:
    """What every recurrent op reads the same way."""

    def __init__(self, node: NodeView, gates: int, defaults: list[str]):
        self.x = _sequence_first(node, node.input(0))
        self.steps, self.batch = self.x.shape[:2]
        direction = node.attr("direction", "forward")
        if direction not in ("forward", "reverse", "bidirectional"):
            raise node.unsupported(f"direction={direction!r}")
        self.reverse = [direction == "reverse"] if direction != "bidirectional" else [False, True]
        self.hidden = node.input(2).shape[-1]
        self.gates = gates
        self.clip = node.attr("clip")
        self.fns = _activations(node, defaults, len(self.reverse))
        lens = node.static(4, "sequence_lens")
        if lens is not None and np.any(np.asarray(lens) != self.steps):
            raise node.unsupported("sequence_lens shorter than the sequence (padding)")

    def projected(self, w: Tensor, bias: Tensor | None) -> Tensor:
        """x_t W^T + b for every step at once: (steps, batch, gates * hidden). The bias is
        one more column of W against a column of ones in x: torch's exports reorder the
        gates of B by slices and concatenations, which a GEMM epilogue would evaluate for
        every element of the product instead of once per column (the two operands are
        copied anyway: x to sequence-first order, W to ONNX's gate order)."""
        flat = gc.reshape(self.x, (self.steps * self.batch, self.x.shape[2]))
        if bias is not None:
            flat = gc.concatenate([flat, gc.ones((flat.shape[0], 1), flat.dtype)], 1)
            w = gc.concatenate([w, gc.reshape(bias, (-1, 1))], 1)
        y = gc.matmul(flat, gc.transpose(w))
        return gc.reshape(y, (self.steps, self.batch, -1))

    def zero_state(self) -> Tensor:
        return gc.zeros((self.batch, self.hidden), self.x.dtype)

    def order(self, d: int) -> range:
        return range(self.steps - 1, -1, -1) if self.reverse[d] else range(self.steps)

    def clipped(self, v: Tensor) -> Tensor:
        return v if self.clip is None else gc.clip(v, -self.clip, self.clip)


def _gate(v: Tensor, k: int, hidden: int) -> Tensor:
    return axis_slice(v, v.ndim - 1, k * hidden, (k + 1) * hidden)


def _biases(node: NodeView, d: int, gates: int, hidden: int):
    b = node.input(3)
    if b is None:
        return None, None
    return _gate(b[d], 0, gates * hidden), _gate(b[d], 1, gates * hidden)


def _summed_biases(node: NodeView, d: int, gates: int, hidden: int) -> Tensor | None:
    """Wb + Rb, added once to the projection of every step instead of at each step: the
    steps' kernels then read no bias (torch's exports reorder the gates of B by slices and
    concatenations, which every step would evaluate again)."""
    wb, rb = _biases(node, d, gates, hidden)
    return None if wb is None else wb + rb


def _outputs(node: NodeView, setup: _Setup, per_direction: list[list[Tensor]],
             finals: list[list[Tensor]]) -> list[Tensor]:
    """Y (steps, directions, batch, hidden) and the final states, in the node's layout."""
    y = gc.stack([gc.stack(hs, 0) for hs in per_direction], 1)
    states = [gc.stack(list(f), 0) for f in zip(*finals)]
    if node.attr("layout", 0):
        y = gc.transpose(y, (2, 0, 1, 3))
        states = [gc.transpose(s, (1, 0, 2)) for s in states]
    return [y] + states


@converter("LSTM", attrs=RNN_ATTRS + ("input_forget",), max_outputs=3)
def _lstm(node: NodeView) -> list[Tensor]:
    if node.attr("input_forget", 0):
        raise node.unsupported("input_forget=1")
    s = _Setup(node, 4, ["Sigmoid", "Tanh", "Tanh"])
    hs_all, finals = [], []
    for d in range(len(s.reverse)):
        f, g, h = s.fns[d]
        xw = s.projected(node.input(1)[d], _summed_biases(node, d, 4, s.hidden))
        r_t = gc.transpose(node.input(2)[d])
        peep = node.input(7)
        p = [None] * 3 if peep is None else [_gate(peep[d], k, s.hidden) for k in range(3)]
        ht = _state(node, 5, d, s)
        ct = _state(node, 6, d, s)
        hs = [None] * s.steps
        for t in s.order(d):
            z = xw[t] + gc.matmul(ht, r_t)
            i_in, o_in, f_in, c_in = (_gate(z, k, s.hidden) for k in range(4))
            if p[0] is not None:
                i_in, f_in = i_in + p[0] * ct, f_in + p[2] * ct
            i, fo, c = f(s.clipped(i_in)), f(s.clipped(f_in)), g(s.clipped(c_in))
            ct = fo * ct + i * c
            o_in = o_in + p[1] * ct if p[1] is not None else o_in
            ht = f(s.clipped(o_in)) * h(ct)
            hs[t] = ht
        hs_all.append(hs)
        finals.append((ht, ct))
    return _outputs(node, s, hs_all, finals)


@converter("GRU", attrs=RNN_ATTRS + ("linear_before_reset",), max_outputs=2)
def _gru(node: NodeView) -> list[Tensor]:
    s = _Setup(node, 3, ["Sigmoid", "Tanh"])
    hs_all, finals = [], []
    linear_before_reset = bool(node.attr("linear_before_reset", 0))
    for d in range(len(s.reverse)):
        f, g = s.fns[d]
        wb, rb = _biases(node, d, 3, s.hidden)
        xw = s.projected(node.input(1)[d], wb)
        r = node.input(2)[d]
        r_zr = gc.transpose(axis_slice(r, 0, 0, 2 * s.hidden))
        r_h = gc.transpose(axis_slice(r, 0, 2 * s.hidden, 3 * s.hidden))
        rb_zr = None if rb is None else _gate(rb, 0, 2 * s.hidden)
        rb_h = None if rb is None else _gate(rb, 2, s.hidden)
        ht = _state(node, 5, d, s)
        hs = [None] * s.steps
        for t in s.order(d):
            x_t = xw[t]
            zr = _gate(x_t, 0, 2 * s.hidden) + gc.matmul(ht, r_zr)
            if rb_zr is not None:
                zr = zr + rb_zr
            z = f(s.clipped(_gate(zr, 0, s.hidden)))
            rr = f(s.clipped(_gate(zr, 1, s.hidden)))
            if linear_before_reset:
                rec = gc.matmul(ht, r_h)
                rec = rec + rb_h if rb_h is not None else rec
                h_in = _gate(x_t, 2, s.hidden) + rr * rec
            else:
                h_in = _gate(x_t, 2, s.hidden) + gc.matmul(rr * ht, r_h)
                h_in = h_in + rb_h if rb_h is not None else h_in
            cand = g(s.clipped(h_in))
            ht = (1.0 - z) * cand + z * ht
            hs[t] = ht
        hs_all.append(hs)
        finals.append((ht,))
    return _outputs(node, s, hs_all, finals)


@converter("RNN", attrs=RNN_ATTRS, max_outputs=2)
def _rnn(node: NodeView) -> list[Tensor]:
    s = _Setup(node, 1, ["Tanh"])
    hs_all, finals = [], []
    for d in range(len(s.reverse)):
        (f,) = s.fns[d]
        xw = s.projected(node.input(1)[d], _summed_biases(node, d, 1, s.hidden))
        r_t = gc.transpose(node.input(2)[d])
        ht = _state(node, 5, d, s)
        hs = [None] * s.steps
        for t in s.order(d):
            ht = f(s.clipped(xw[t] + gc.matmul(ht, r_t)))
            hs[t] = ht
        hs_all.append(hs)
        finals.append((ht,))
    return _outputs(node, s, hs_all, finals)
