"""Graph passes: the rewrite engine, dce, cse, fold, simplify and the pipeline.

Every test checks structure (node counts, op names, hit counts) and values: the interpreter
must give the same results before and after a pass, on random inputs.
"""
import dataclasses
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphc as gc
from graphc.builder import apply
from graphc.errors import RewriteError, VerifyError
from graphc.interp import evaluate
from graphc.ir import Graph
from graphc.ops import REGISTRY, OpDef, register
from graphc.ops.elementwise import unary_infer
from graphc.passes import Pass, format_records, run_pipeline
from graphc.passes.cse import canonical_constants, eliminate_common_subexpressions
from graphc.passes.dce import eliminate_dead_code
from graphc.passes.fold import fold_constants
from graphc.passes.pipeline import GRAPH_PASSES, optimize
from graphc.passes.simplify import simplify_graph
from graphc.rewrite import Rule, apply_rules, make, rebuild

RNG = np.random.default_rng(1234)


# ---- helpers ----

def random_array(t, rng=RNG) -> np.ndarray:
    """Nonzero values of t's type; positive for placeholders named pos*."""
    if np.issubdtype(t.dtype, np.floating):
        values = rng.uniform(0.25, 2.0, t.shape)
        sign = 1 if (t.name or "").startswith("pos") else rng.choice([-1, 1], t.shape)
        return (values * sign).astype(t.dtype)
    if t.dtype == np.bool_:
        return rng.random(t.shape) < 0.5
    return rng.integers(-5, 6, t.shape).astype(t.dtype)


def assert_same_values(before: Graph, after: Graph) -> None:
    feeds = {p: random_array(p) for p in before.placeholders}
    assert len(before.outputs) == len(after.outputs)
    for a, b in zip(evaluate(before, feeds), evaluate(after, feeds)):
        assert (a.shape, a.dtype) == (b.shape, b.dtype)
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, equal_nan=True)


def ops_of(graph: Graph) -> list[str]:
    return sorted(n.op for n in graph.nodes)


def graph_of(*outputs) -> Graph:
    return Graph.from_outputs(outputs)


@pytest.fixture
def temp_ops():
    """Register test-only ops; remove them afterwards so the registry tests never see them."""
    added = []

    def add(name, ref, kind="elementwise"):
        register(OpDef(name, kind, 1, (), unary_infer("float"), ref, lambda g, y, x: [g],
                       {"opencl": "{0}"}, "test-only op"))
        added.append(name)
    yield add
    for name in added:
        del REGISTRY[name]


# ---- rebuild and the rule engine ----

def test_rebuild_without_changes_returns_the_same_graph():
    x = gc.placeholder((3,), name="x")
    g = graph_of(gc.exp(x) + x)
    assert rebuild(g, lambda node, inputs: None) is g


def test_rebuild_reuses_untouched_nodes_and_keeps_output_order():
    x = gc.placeholder((3,), name="x")
    a, b = gc.exp(x), gc.negative(x)
    c = b * 2.0
    g = graph_of(a, c, b)
    new = rebuild(g, lambda node, inputs: inputs[0] if node.op == "negative" else None)
    assert new.outputs[0] is a and new.outputs[2] is x and len(new.outputs) == 3
    assert a.producer in new.nodes and b.producer not in new.nodes
    assert new.outputs[1].producer.inputs[0] is x      # multiply rebuilt over x
    assert_same_values(graph_of(a, gc.negative(gc.negative(x)) * 2.0, x), new)


def test_rebuild_rejects_a_replacement_of_another_type():
    x = gc.placeholder((3,), name="x")
    g = graph_of(gc.exp(x))
    with pytest.raises(RewriteError, match="changed its type from f32\\[3\\] to f64\\[3\\]"):
        rebuild(g, lambda node, inputs: gc.cast(inputs[0], gc.float64))


def test_make_reports_an_ill_typed_node():
    x, y = gc.placeholder((3,)), gc.placeholder((4,))
    with pytest.raises(RewriteError, match="ill-typed add"):
        make("add", [x, y])


def test_apply_rules_counts_hits_and_stops_at_a_fixpoint():
    x = gc.placeholder((3,), name="x")
    g = graph_of(gc.negative(gc.negative(gc.negative(gc.negative(x)))))
    rule = Rule("cancel", "negative", lambda n, i: i[0].producer.inputs[0]
                if i[0].op == "negative" else None)
    hits = Counter()
    new = eliminate_dead_code(apply_rules(g, [rule], hits))
    assert new.outputs[0] is x and hits["cancel"] == 2


def test_apply_rules_reports_non_convergence():
    x = gc.placeholder((3,), name="x")
    g = graph_of(gc.negative(x))
    rule = Rule("regrow", "negative", lambda node, inputs: make("negative", inputs))
    with pytest.raises(RewriteError, match="did not converge after 3 iterations: last rule regrow"):
        apply_rules(g, [rule], max_iterations=3)


# ---- dce ----

def test_dce_drops_dead_nodes_and_constants_but_keeps_placeholders_and_variables():
    x, unused = gc.placeholder((3,), name="x"), gc.placeholder((2,), name="unused")
    w = gc.variable(np.ones(3, np.float32), name="w")
    dead = gc.exp(x * gc.constant(np.arange(3, dtype=np.float32))) + w
    live = gc.sin(x)
    full = Graph.from_outputs([live, dead], inputs=[x, unused])
    g = dataclasses.replace(full, outputs=(live,))
    new = eliminate_dead_code(g)
    assert ops_of(new) == ["sin"] and new.outputs == (live,)
    assert [v.name for v in new.inputs] == ["x", "unused", "w"]
    assert eliminate_dead_code(new) is new
    assert_same_values(g, new)


# ---- cse ----

def test_cse_merges_duplicate_subexpressions():
    x = gc.placeholder((3, 4), name="x")
    g = graph_of(gc.exp(x) * gc.tanh(gc.exp(x)), gc.tanh(gc.exp(x)))
    new = eliminate_dead_code(eliminate_common_subexpressions(g))
    assert ops_of(new) == ["exp", "multiply", "tanh"]
    assert new.outputs[1] is new.outputs[0].producer.inputs[1]
    assert_same_values(g, new)


def test_cse_merges_commutative_operands_in_either_order_only():
    x, y = gc.placeholder((3,), name="x"), gc.placeholder((3,), name="y")
    g = graph_of(x * y, y * x, x - y, y - x)
    new = eliminate_dead_code(eliminate_common_subexpressions(g))
    assert ops_of(new) == ["multiply", "subtract", "subtract"]
    assert new.outputs[0] is new.outputs[1] and len(new.outputs) == 4
    assert_same_values(g, new)


def test_cse_merges_equal_constants_only():
    x = gc.placeholder((2,), name="x")
    g = graph_of(x + gc.constant([1.0, 2.0], gc.float32), x + gc.constant([1.0, 2.0], gc.float32))
    new = eliminate_dead_code(eliminate_common_subexpressions(g))
    assert ops_of(new) == ["add"] and len([v for v in new.inputs if v.role == "constant"]) == 1
    others = [gc.constant(2, gc.int32), gc.constant(2, gc.int64), gc.constant([1, 2]),
              gc.constant([[1, 2]]), gc.constant(-0.0), gc.constant(0.0)]
    canon = canonical_constants(Graph(tuple(others), (), ()))
    assert all(canon[c] is c for c in others)


def test_cse_never_merges_variables_or_different_attributes():
    x = gc.placeholder((3, 4), name="x")
    w1 = gc.variable(np.ones((3, 4), np.float32))
    w2 = gc.variable(np.ones((3, 4), np.float32))
    g = graph_of(w1 * x, w2 * x, gc.sum(x, axis=0), gc.sum(x, axis=1))
    assert eliminate_common_subexpressions(g) is g


def test_cse_merges_random_ops_only_when_their_seeds_are_equal():
    same = [gc.random.uniform((3,), seed=7), gc.random.uniform((3,), seed=7)]
    other = [gc.random.uniform((3,), seed=8), gc.random.uniform((3,)), gc.random.uniform((3,))]
    g = graph_of(*same, *other)
    new = eliminate_dead_code(eliminate_common_subexpressions(g))
    assert len(new.nodes) == 4 and new.outputs[0] is new.outputs[1]
    assert_same_values(g, new)


# ---- fold ----

def test_fold_evaluates_constant_subgraphs_in_one_sweep():
    x = gc.placeholder((3,), name="x")
    c = gc.exp(gc.constant(np.log(2.0), gc.float32)) * gc.constant(3.0, gc.float32)
    g = graph_of(x + c, c)
    new = eliminate_dead_code(fold_constants(g))
    assert ops_of(new) == ["add"]
    assert new.outputs[1].role == "constant" and np.isclose(new.outputs[1].data, 6.0)
    assert new.outputs[1].dtype == np.float32
    assert fold_constants(new) is new
    assert_same_values(g, new)


def test_fold_respects_the_size_limit():
    small = gc.constant(np.ones((64, 64), np.float32)) * 2.0           # 4096 elements
    large = gc.constant(np.ones((65, 64), np.float32)) * 2.0
    g = graph_of(small, large)
    new = fold_constants(g)
    assert ops_of(new) == ["multiply"] and new.outputs[0].role == "constant"
    assert new.outputs[1] is large
    assert fold_constants(g, max_elements=0) is g


def test_fold_does_not_expand_a_broadcast_into_an_array():
    tiny = gc.broadcast_to(gc.constant(1.0, gc.float32), (4,))          # SMALL: folded
    wide = gc.broadcast_to(gc.constant(1.0, gc.float32), (64, 64))      # stays a broadcast
    new = fold_constants(graph_of(tiny, wide))
    assert new.outputs[0].role == "constant" and ops_of(new) == ["broadcast_to"]


def test_fold_leaves_random_ops_and_variables_alone():
    w = gc.variable(np.ones(3, np.float32))
    g = graph_of(gc.random.uniform((3,)) * 2.0, w * 2.0)
    assert fold_constants(g) is g


def test_fold_keeps_a_node_whose_evaluation_fails(temp_ops):
    def failing(x):
        raise ValueError("no value at compile time")
    temp_ops("test_failing", failing)
    out = apply("test_failing", [gc.constant([1.0, 2.0], gc.float32)])
    g = graph_of(out)
    assert fold_constants(g) is g


# ---- simplify: every rule with positive and negative cases ----

class P:
    """The placeholders simplify cases are built from."""

    x = gc.placeholder((3, 4), name="x")
    pos = gc.placeholder((3, 4), name="pos")
    v = gc.placeholder((4,), name="v")
    s = gc.placeholder((), name="s")
    i = gc.placeholder((3, 4), gc.int32, name="i")
    t = gc.placeholder((2, 3, 4), name="t")
    r = gc.placeholder((1, 4), name="r")
    r2 = gc.placeholder((1, 4), name="r2")
    q = gc.placeholder((2, 4), name="q")
    c = gc.placeholder((3, 1), name="c")
    u = gc.placeholder((2, 1, 4), name="u")
    wide = gc.placeholder((1, 40), name="wide")
    k = gc.placeholder((), gc.int32, name="k")


def rows(value, before, after):
    """`value` zero-padded along axis 0."""
    return gc.pad(value, ((before, after), (0, 0)))


def f32(value):
    return gc.constant(value, gc.float32)


# (id, build, the rule that must fire or None, ops left after simplify + dce)
SIMPLIFY_CASES = [
    ("x+0", lambda: P.x + 0.0, "add_zero", []),
    ("0+x", lambda: 0.0 + P.x, "add_zero", []),
    ("int x+0", lambda: P.i + 0, "add_zero", []),
    ("v+zeros broadcasts", lambda: P.v + gc.zeros((3, 4)), "add_zero", ["broadcast_to"]),
    ("zeros+s broadcasts", lambda: gc.zeros((3,)) + P.s, "add_zero", ["broadcast_to"]),
    ("x+1 kept", lambda: P.x + 1.0, None, ["add"]),
    ("x+[0,0,0,1] kept", lambda: P.x + f32([0, 0, 0, 1]), None, ["add"]),
    ("x-0", lambda: P.x - 0.0, "subtract_zero", []),
    ("0-x kept", lambda: 0.0 - P.x, None, ["subtract"]),
    ("x*1", lambda: P.x * 1.0, "multiply_one", []),
    ("1*x", lambda: 1.0 * P.x, "multiply_one", []),
    ("x*ones_like", lambda: P.x * gc.ones_like(P.x), "multiply_one", []),
    ("x*ones(3,4)", lambda: P.x * gc.ones((3, 4)), "multiply_one", []),
    ("v*ones broadcasts", lambda: P.v * gc.ones((3, 4)), "multiply_one", ["broadcast_to"]),
    ("x*2 kept", lambda: P.x * 2.0, None, ["multiply"]),
    ("x*0 kept: NaN*0", lambda: P.x * 0.0, None, ["multiply"]),
    ("x*nan kept", lambda: P.x * np.float32(np.nan), None, ["multiply"]),
    ("x/1", lambda: P.x / 1.0, "divide_one", []),
    ("1/x kept", lambda: 1.0 / P.x, None, ["divide"]),
    ("x**1", lambda: P.pos ** 1.0, "power_one", []),
    ("x**2 kept", lambda: P.pos ** 2.0, None, ["power"]),
    ("--x", lambda: -(-P.x), "cancel_double_negative", []),
    ("---x", lambda: -(-(-P.x)), "cancel_double_negative", ["negative"]),
    ("-x kept", lambda: -P.x, None, ["negative"]),
    ("log(exp x)", lambda: gc.log(gc.exp(P.x)), "cancel_log_exp", []),
    ("exp(log x) kept", lambda: gc.exp(gc.log(P.pos)), None, ["exp", "log"]),
    ("identity transpose", lambda: apply("transpose", [P.x], perm=(0, 1)),
     "drop_identity_transpose", []),
    ("x.T.T", lambda: P.x.T.T, "merge_transposes", []),
    ("3-d transposes", lambda: gc.transpose(gc.transpose(P.t, (1, 2, 0)), (1, 2, 0)),
     "merge_transposes", ["transpose"]),
    ("x.T kept", lambda: P.x.T, None, ["transpose"]),
    ("same-shape reshape", lambda: apply("reshape", [P.x], shape=(3, 4)), "drop_noop_reshape",
     []),
    ("reshape chain", lambda: gc.reshape(gc.reshape(P.x, (12,)), (4, 3)), "merge_reshapes",
     ["reshape"]),
    ("reshape round trip", lambda: gc.reshape(gc.reshape(P.x, (12,)), (3, 4)), "merge_reshapes",
     []),
    ("reshape kept", lambda: gc.reshape(P.x, (4, 3)), None, ["reshape"]),
    ("same-shape broadcast", lambda: apply("broadcast_to", [P.x], shape=(3, 4)),
     "drop_noop_broadcast", []),
    ("broadcast chain", lambda: gc.broadcast_to(gc.broadcast_to(P.v, (3, 4)), (2, 3, 4)),
     "merge_broadcasts", ["broadcast_to"]),
    ("broadcast kept", lambda: gc.broadcast_to(P.v, (3, 4)), None, ["broadcast_to"]),
    ("same-dtype cast", lambda: apply("cast", [P.x], dtype=np.dtype(np.float32)),
     "drop_noop_cast", []),
    ("cast kept", lambda: gc.cast(P.x, gc.float64), None, ["cast"]),
    ("sum over no axes", lambda: apply("reduce_sum", [P.x], axes=(), keepdims=False),
     "drop_empty_sum", []),
    ("max over no axes", lambda: apply("reduce_max", [P.x], axes=(), keepdims=True),
     "drop_empty_max", []),
    ("min over no axes", lambda: apply("reduce_min", [P.x], axes=(), keepdims=False),
     "drop_empty_min", []),
    ("sum kept", lambda: gc.sum(P.x, axis=0), None, ["reduce_sum"]),
    ("padded rows with a small gap (folded)", lambda: rows(P.r, 0, 2) + rows(P.r2, 2, 0),
     "pad_sum_to_concatenate", ["concatenate"]),
    ("padded rows with a wide gap", lambda: rows(P.wide, 0, 2) + rows(P.wide, 2, 0),
     "pad_sum_to_concatenate", ["broadcast_to", "concatenate"]),
    ("padded rows tiling", lambda: rows(P.r, 0, 2) + rows(P.r2, 1, 1) + rows(P.r, 2, 0),
     "pad_sum_to_concatenate", ["concatenate"]),
    ("padded rows, gaps at both ends", lambda: rows(P.r, 1, 3) + rows(P.r2, 3, 1),
     "pad_sum_to_concatenate", ["concatenate"]),
    ("3-d pads along axis 1", lambda: gc.pad(P.u, ((0, 0), (2, 0), (0, 0)))
     + gc.pad(P.u, ((0, 0), (0, 2), (0, 0))), "pad_sum_to_concatenate", ["concatenate"]),
    ("overlapping pads kept", lambda: rows(P.q, 0, 1) + rows(P.q, 1, 0), None,
     ["add", "pad", "pad"]),
    ("pads on different axes kept", lambda: rows(P.r, 0, 2) + gc.pad(P.c, ((0, 0), (3, 0))),
     None, ["add", "pad", "pad"]),
    ("pad of a non-zero value kept", lambda: rows(P.r, 0, 2)
     + gc.pad(P.r2, ((2, 0), (0, 0)), constant_values=1.0), None, ["add", "pad", "pad"]),
    ("pad on two axes kept", lambda: gc.pad(P.r, ((0, 2), (0, 1)))
     + gc.pad(P.c, ((0, 0), (4, 0))), None, ["add", "pad", "pad"]),
    ("take of a transpose", lambda: gc.take(gc.transpose(P.t, (1, 0, 2)), 2, axis=0),
     "take_through_transpose", ["take"]),
    ("take of a transpose, rest permuted", lambda: gc.take(gc.transpose(P.t, (2, 0, 1)), -2,
                                                          axis=1),
     "take_through_transpose", ["take", "transpose"]),
    ("take of a fed index through a transpose kept",
     lambda: gc.take(gc.transpose(P.wide, (1, 0)), P.k, axis=0), None, ["take", "transpose"]),
    ("take of a concatenation", lambda: gc.take(gc.concatenate([P.x, P.q], 0), -2, axis=0),
     "take_of_concatenate", ["take"]),
    ("take across a concatenation kept",
     lambda: gc.take(gc.concatenate([P.x, P.x], 1), 1, axis=0), None, ["concatenate", "take"]),
    ("take of a unit axis", lambda: gc.take(P.u, -1, axis=1), "take_of_unit_axis", ["reshape"]),
    ("take of the last of stacked rows", lambda: gc.take(gc.stack([P.v, P.v * 2.0], 0), -1,
                                                         axis=0),
     "take_of_unit_axis", ["multiply"]),
    ("concatenation of one value", lambda: apply("concatenate", [P.x], axis=1),
     "drop_single_concatenate", []),
    ("sum(big * 1) folds", lambda: P.x + gc.sum(f32(np.ones(5000)) * 1.0), "fold_constant",
     ["add"]),
]


@pytest.mark.parametrize("build, rule, ops", [c[1:] for c in SIMPLIFY_CASES],
                         ids=[c[0] for c in SIMPLIFY_CASES])
def test_simplify_rule(build, rule, ops):
    g = graph_of(build())
    hits = Counter()
    new = eliminate_dead_code(simplify_graph(g, hits))
    assert ops_of(new) == sorted(ops)
    assert (rule in hits) if rule else (not hits and new is g)
    assert new.outputs[0].type == g.outputs[0].type
    assert_same_values(g, new)


def test_a_take_out_of_range_is_left_for_run_time_to_report():
    """Devices clamp an index out of range, the interpreter raises: no rule may pick a piece."""
    stacked = gc.concatenate([P.x, P.q], 0)
    for index in (5, -6):
        g = graph_of(apply("take", [stacked, gc.constant(index)], axis=0))
        hits = Counter()
        assert simplify_graph(g, hits) is g and not hits


def test_every_simplify_rule_has_a_case():
    from graphc.passes.simplify import RULES
    assert {r.name for r in RULES} == {c[2] for c in SIMPLIFY_CASES if c[2]}


def test_simplify_keeps_graph_outputs_in_place():
    g = graph_of(P.x * 1.0, P.x + 0.0, -(-P.x), P.v)
    new = simplify_graph(g)
    assert new.outputs == (P.x, P.x, P.x, P.v)


def test_simplified_nodes_carry_the_original_site():
    out = gc.reshape(gc.reshape(P.x, (12,)), (4, 3))
    new = eliminate_dead_code(simplify_graph(graph_of(out)))
    assert new.nodes[0].site == out.producer.site and "test_passes.py" in out.producer.site


# ---- matmul_sums: sums of reductions ----

def bias_row(d, reduce=gc.sum):
    """A per-step bias gradient: the batch sum of `d` padded into row 1 of a (2, n) bias."""
    return gc.pad(gc.reshape(reduce(d, axis=0), (1, d.shape[1])), ((1, 0), (0, 0)))


def test_sum_of_wrapped_reductions_is_one_reduction_per_input_shape():
    from graphc.passes.matmul_sums import merge_matmul_sums
    tall = [gc.placeholder((4, 6), name=f"t{i}") for i in range(4)]
    short = [gc.placeholder((3, 6), name=f"s{i}") for i in range(3)]
    total = sum((bias_row(d) for d in tall + short), bias_row(tall[0], gc.max))
    g = graph_of(total)
    new = eliminate_dead_code(merge_matmul_sums(g))
    assert ops_of(new).count("reduce_sum") == 2 and ops_of(new).count("concatenate") == 2
    assert ops_of(new).count("reduce_max") == 1
    assert_same_values(g, new)
    assert merge_matmul_sums(new) is new


def test_two_reductions_are_not_merged():
    from graphc.passes.matmul_sums import merge_matmul_sums
    g = graph_of(bias_row(P.x) + bias_row(P.pos))
    assert merge_matmul_sums(g) is g


# ---- the pipeline ----

def kitchen_sink() -> Graph:
    """A graph every pass has work in."""
    x, y = gc.placeholder((3, 4), name="x"), gc.placeholder((4,), name="y")
    scale = f32(2.0) - f32(1.0)
    a = gc.tanh(x.T.T * scale + 0.0)
    b = gc.tanh(x) * gc.reshape(gc.reshape(y, (2, 2)), (4,))
    return graph_of(a + b, gc.log(gc.exp(b)), -(-a))


def test_graph_passes_are_listed_once_by_name():
    names = [p.name for p in GRAPH_PASSES]
    assert names == ["fold", "simplify", "stack_steps", "matmul_sums", "cse", "buckets", "dce"]


def test_run_pipeline_records_each_pass():
    g = kitchen_sink()
    seen = []
    new, records = optimize(g, verify_each=True, on_pass=lambda name, gr: seen.append(name))
    assert [r.name for r in records] == seen == [p.name for p in GRAPH_PASSES]
    assert [r.changed for r in records] == [True, True, False, False, True, False, True]
    assert records[0].nodes_before == len(g.nodes) and records[-1].nodes_after == len(new.nodes)
    assert all(r.nodes_after == s.nodes_before for r, s in zip(records, records[1:]))
    assert records[1].hits["merge_transposes"] == 1 and records[1].hits["multiply_one"] == 1
    assert all(r.seconds >= 0 for r in records)
    assert ops_of(new) == ["add", "multiply", "tanh"]       # cse merged the two tanh(x)
    assert_same_values(g, new)
    summary = format_records(records)
    assert len(summary.splitlines()) == 7 and "merge_transposes=1" in summary


def test_the_pipeline_is_idempotent():
    once, _ = optimize(kitchen_sink())
    twice, records = optimize(once)
    assert twice is once and not any(r.changed for r in records)


def test_the_pipeline_is_idempotent_when_a_rewrite_exposes_a_fold():
    x = gc.placeholder((3,), gc.float64, name="x")
    g = graph_of(x + gc.sum(gc.constant(np.linspace(0, 1, 5000)) * 1.0))
    once, _ = optimize(g)
    assert ops_of(once) == ["add"]
    assert optimize(once)[0] is once
    assert_same_values(g, once)


def test_passes_are_disabled_by_name():
    x = gc.placeholder((3,), name="x")
    g = graph_of(gc.exp(x) + gc.exp(x))
    new, records = optimize(g, disabled=("cse",))
    assert "cse" not in [r.name for r in records] and ops_of(new) == ["add", "exp", "exp"]
    with pytest.raises(ValueError, match="unknown pass\\(es\\) csee"):
        optimize(g, disabled=("csee",))


def drop_first_node(graph: Graph) -> Graph:
    return dataclasses.replace(graph, nodes=graph.nodes[1:])


def test_verify_each_blames_the_pass_that_broke_the_graph(monkeypatch):
    x = gc.placeholder((3,), name="x")
    g = graph_of(gc.sin(gc.exp(x)))
    passes = [GRAPH_PASSES[0], Pass("broken", drop_first_node)]
    with pytest.raises(VerifyError, match="after pass broken"):
        run_pipeline(g, passes, verify_each=True)
    monkeypatch.setenv("GRAPHC_VERIFY", "0")
    run_pipeline(g, passes)
    monkeypatch.setenv("GRAPHC_VERIFY", "1")
    with pytest.raises(VerifyError, match="after pass broken"):
        run_pipeline(g, passes)


# ---- property: the pipeline never changes what a graph computes ----

UNARY = {
    "negative": gc.negative, "tanh": gc.tanh, "sigmoid": gc.sigmoid,
    "log_exp": lambda a: gc.log(gc.exp(gc.tanh(a))),
    "times_one": lambda a: a * 1.0, "plus_zero": lambda a: 0.0 + a,
    "minus_zero": lambda a: a - 0.0, "over_one": lambda a: a / 1.0,
    "double_negative": lambda a: -(-a), "double_transpose": lambda a: a.T.T,
    "reshape_round_trip": lambda a: gc.reshape(gc.reshape(a, (a.size,)), a.shape),
    "same_cast": lambda a: apply("cast", [a], dtype=a.dtype),
    "times_ones": lambda a: a * gc.ones_like(a),
    "repeated": lambda a: gc.sin(a) * gc.sin(a),
    "repeated_constant": lambda a: (a + 2.0) / (a + 2.0),
    "big_constant_sum": lambda a: a * gc.sum(gc.constant(np.full(4099, 1e-3)) * 1.0),
}
BINARY = {"add": gc.add, "subtract": gc.subtract, "multiply": gc.multiply,
          "maximum": gc.maximum, "minimum": gc.minimum}
STEP = st.tuples(st.sampled_from(sorted(UNARY) + sorted(BINARY)),
                 st.integers(0, 63), st.integers(0, 63))


def random_program(steps, picks) -> Graph:
    """Leaves (float64, so log(exp(.)) rounding stays far below the tolerance), then steps."""
    x, y = gc.placeholder((2, 3), gc.float64, name="x"), gc.placeholder((3,), gc.float64, name="y")
    pool = [x, y, gc.constant(0.5), gc.constant(np.linspace(-1, 1, 6).reshape(2, 3)),
            gc.constant([1.0, 2.0, 3.0]), gc.constant(2.0), gc.constant(2.0)]
    for name, i, j in steps:
        a, b = pool[i % len(pool)], pool[j % len(pool)]
        pool.append(BINARY[name](a, b) if name in BINARY else UNARY[name](a))
    outputs = [pool[-1]] + [pool[k % len(pool)] for k in picks]
    return Graph.from_outputs(outputs, inputs=[x, y])


@settings(max_examples=100, deadline=None)
@given(st.lists(STEP, min_size=1, max_size=12), st.lists(st.integers(0, 63), max_size=2))
def test_pipeline_preserves_values_and_is_idempotent(steps, picks):
    g = random_program(steps, picks)
    new, _ = optimize(g, verify_each=True)
    assert_same_values(g, new)
    assert len(new.nodes) <= len(g.nodes)
    again, records = optimize(new, verify_each=True)
    assert again is new and not any(r.changed for r in records)


def test_a_sum_of_matmuls_becomes_one_matmul_over_concatenations():
    hs = [gc.placeholder((4, 3), gc.float64) for _ in range(4)]
    gs = [gc.placeholder((4, 5), gc.float64) for _ in range(4)]
    total = hs[0].T @ gs[0]
    for h, g in zip(hs[1:], gs[1:]):
        total = total + h.T @ g
    g0 = graph_of(total)
    new, _ = optimize(g0)
    assert ops_of(new).count("matmul") == 1 and "concatenate" in ops_of(new)
    assert_same_values(g0, new)


def test_two_matmuls_or_mixed_sums_stay_as_written():
    a, b, c = (gc.placeholder((3, 3), gc.float64) for _ in range(3))
    for total in (a @ b + b @ c, a @ b + b @ c + a, a @ b + b @ c + (a @ c) * 2.0):
        new, _ = optimize(graph_of(total))
        assert "concatenate" not in ops_of(new)
