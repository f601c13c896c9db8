"""Gradient checks generated from the registry: every differentiable op, in float64.

The graphs come from the device op suite's table (tests/device_cases.py), which covers
every registered op with inputs in each op's domain (log of positives, ...) and with
broadcasting. For each case, the cost sum(u * output) is differentiated by gc.grad and
compared with central finite differences of the interpreter at sampled input elements.
"""
import numpy as np
import pytest

import graphc as gc
from device_cases import CASES, F64, Case, GraphBuilder
from graphc.ops import REGISTRY

SAMPLES = 6          # finite-difference probes per input (all elements when fewer)
EPS = 1e-6
NOT_SMOOTH = {"nan-reductions",     # NaN on purpose: nothing to differentiate
              "power"}              # negative bases on purpose; replaced below


def _power_positive_bases(g):
    a, b = g.input((7, 13), low=0.2, high=3), g.input((13,), low=-2, high=2)
    s = g.input((), low=0.5, high=2)
    return [gc.power(a, b), gc.power(s, a), a ** 2.5]


GRAD_CASES = [c for c in CASES if F64 in c.dtypes and c.calls == 1 and c.name not in NOT_SMOOTH]
GRAD_CASES.append(Case("power-positive-bases", frozenset({"power"}), (F64,),
                       _power_positive_bases))


class SmoothBuilder(GraphBuilder):
    """Float inputs drawn from a continuum (the device suite draws integers for some ops,
    to test ties and zeros), so no probe lands on a kink such as relu's 0 or a tie."""

    def _values(self, shape, dtype, low, high, discrete):
        if dtype == F64:
            return np.asarray(self.rng.uniform(low, high, shape)
                              + 1e-3 * self.rng.standard_normal(shape))
        return super()._values(shape, dtype, low, high, discrete)


def _differentiable_ops() -> set[str]:
    return {name for name, op in REGISTRY.items() if op.differentiable}


def test_every_differentiable_op_has_a_gradient_check():
    covered = set().union(*(c.ops for c in GRAD_CASES))
    missing = _differentiable_ops() - covered
    assert not missing, f"differentiable ops without a float64 gradient check: {sorted(missing)}"


def _float_inputs(builder: GraphBuilder) -> list:
    return [p for p in builder.feeds if p.dtype == F64]


def _cost(outputs, rng) -> gc.Tensor:
    terms = [gc.sum(out * gc.constant(rng.standard_normal(out.shape)))
             for out in outputs if out.dtype == F64 and out.size]
    return gc.sum(gc.stack(terms)) if terms else None


@pytest.mark.parametrize("case", GRAD_CASES, ids=lambda c: c.name)
def test_gradient_matches_finite_differences(case):
    builder = SmoothBuilder(F64, (F64,), seed=3)
    outputs = case.build(builder)
    rng = np.random.default_rng(4)
    cost, inputs = _cost(outputs, rng), _float_inputs(builder)
    if cost is None or not inputs:
        pytest.skip("no float output or input")
    grads = gc.grad(cost, inputs, disconnected="zero")
    symbolic = gc.interpret(grads, builder.feeds)
    for p, analytic in zip(inputs, symbolic):
        for flat in _probes(p.size, rng):
            numeric = _central_difference(cost, builder.feeds, p, flat)
            exact = analytic.flat[flat]
            assert abs(exact - numeric) <= 1e-5 * max(1.0, abs(numeric)), (
                f"{case.name}: d cost / d {p.name}[{flat}] is {exact}, finite differences"
                f" say {numeric}")


def _probes(size: int, rng) -> np.ndarray:
    return np.arange(size) if size <= SAMPLES else rng.choice(size, SAMPLES, replace=False)


def _central_difference(cost, feeds, p, flat) -> float:
    values = []
    for sign in (1, -1):
        shifted = dict(feeds)
        shifted[p] = np.array(feeds[p], dtype=np.float64)
        shifted[p].flat[flat] += sign * EPS
        values.append(float(gc.interpret(cost, shifted)))
    return (values[0] - values[1]) / (2 * EPS)
