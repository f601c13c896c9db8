"""Every op record is complete: the fields each stage relies on are all filled, and every op
lowers to OpenCL (an expression template, or an entry of the lowering registry the OpenCL
renderer can render)."""
import inspect
from pathlib import Path

import pytest

import graphc as gc
from graphc.codegen import lowerings, raw
from graphc.codegen.lowerings import LOWERINGS, lowering_of
from graphc.ops import KINDS, REGISTRY, NonDifferentiable

OPS = sorted(gc.load_all())


def test_registry_has_the_public_op_set():
    expected = {"add", "subtract", "multiply", "divide", "power", "exp", "log", "sqrt", "abs",
                "tanh", "sigmoid", "relu", "sin", "cos", "square", "maximum", "minimum",
                "where", "clip", "cast", "equal", "less", "greater", "reduce_sum", "reduce_max",
                "reduce_min", "argmax", "reshape", "transpose", "broadcast_to", "concatenate",
                "pad", "take", "slice", "matmul", "conv2d", "max_pool2d", "avg_pool2d",
                "softmax", "log_softmax", "one_hot", "random_uniform", "random_normal",
                "random_bernoulli"}
    assert expected <= set(REGISTRY), sorted(expected - set(REGISTRY))


@pytest.mark.parametrize("name", OPS)
def test_record_is_complete(name):
    op = REGISTRY[name]
    assert op.name == name
    assert op.kind in KINDS
    assert op.arity is None or op.arity >= 0
    assert isinstance(op.attrs, tuple) and all(isinstance(a, str) for a in op.attrs)
    assert callable(op.infer) and callable(op.ref)
    assert op.doc.strip(), f"{name} has no doc line"
    lowering = lowering_of(name)
    if lowering is lowerings.ELEMENTWISE:
        assert op.kind == "elementwise"
        assert "opencl" in op.templates and op.templates["opencl"], f"{name} has no OpenCL template"
    elif lowering.kind == "inline":
        assert callable(lowering.rule), f"{name} has no index rule"
    elif lowering.kind == "loop":
        assert callable(lowering.loop), f"{name} has no LoopSpec builder"
    elif lowering.kind == "host":
        assert op.kind == "collective" and lowering.buffer_operands
    else:
        assert lowering.template in set(raw.TEMPLATES) | {"cross_entropy_rows"}, \
            f"{name}: the OpenCL renderer has no template {lowering.template!r}"
        assert lowering.template == "cross_entropy_rows" or callable(lowering.geometry)


def test_the_lowering_registry_names_registered_ops_only():
    assert set(LOWERINGS) <= set(REGISTRY), sorted(set(LOWERINGS) - set(REGISTRY))


@pytest.mark.parametrize("name", OPS)
def test_a_record_names_no_missing_file(name):
    kernels = Path(__file__).resolve().parent.parent / "kernels_cl"
    for language, template in REGISTRY[name].templates.items():
        named = template.rsplit("/", 1)[-1]
        assert not named.endswith(".cl") or (kernels / named).is_file(), \
            f"{name}'s {language} template names {template}, which does not exist"


@pytest.mark.parametrize("name", OPS)
def test_every_op_has_a_gradient_rule_or_is_declared_non_differentiable(name):
    op = REGISTRY[name]
    if isinstance(op.vjp, NonDifferentiable):
        assert op.vjp.reason
    else:
        assert callable(op.vjp)
        params = inspect.signature(op.vjp).parameters
        assert len(params) >= 2, f"{name}.vjp must take (g, y, *inputs, **attrs)"


@pytest.mark.parametrize("name", [n for n in OPS if REGISTRY[n].kind == "elementwise"])
def test_elementwise_templates_use_every_operand(name):
    op = REGISTRY[name]
    template = op.templates["opencl"]
    for i in range(op.arity):
        assert "{%d}" % i in template, f"{name}'s template ignores operand {i}"
