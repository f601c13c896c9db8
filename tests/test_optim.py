"""gc.optim: each optimizer over several steps against a numpy transcription of the published
(Keras 3) rule, on the reference interpreter and on the device; schedules; clipping; config."""
from __future__ import annotations

import math

import numpy as np
import pytest

import graphc as gc
from graphc import optim

STEPS = 6


# ---- the problem: a quadratic whose gradient numpy knows exactly ----

def _problem(seed: int = 0):
    """Two float32 params and per-element (c, d): loss = sum(c/2 w^2 + d w), grad = c w + d."""
    rng = np.random.default_rng(seed)
    shapes = [(3, 4), (4,)]
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    coef = [(rng.uniform(0.5, 2.0, s).astype(np.float32), rng.standard_normal(s).astype(np.float32))
            for s in shapes]
    return init, coef


def _graph(init, coef):
    params = [gc.variable(w.copy(), name=f"p{i}") for i, w in enumerate(init)]
    loss = sum(gc.sum(0.5 * c * gc.square(p) + d * p) for p, (c, d) in zip(params, coef))
    return params, loss


def _interpret_step(loss, updates):
    """One step on the reference interpreter: every new value from the old ones, then assign."""
    values = gc.interpret([loss] + [v for _, v in updates])
    for (var, _), value in zip(updates, values[1:]):
        var.set_value(value)
    return values[0]


def _run(opt, init, coef, device, steps=STEPS):
    """Params after each step, on `device` (gc.function) or the interpreter (device=None)."""
    params, loss = _graph(init, coef)
    updates = opt.updates(loss, params)
    step = gc.function([], loss, updates=updates, device=device) if device else None
    history = []
    for _ in range(steps):
        step() if step else _interpret_step(loss, updates)
        history.append([p.get_value() for p in params])
    return history


# ---- numpy transcriptions of the published rules ----

def _clip(grads, cfg):
    if cfg.get("clipvalue") is not None:
        grads = [np.clip(g, -cfg["clipvalue"], cfg["clipvalue"]) for g in grads]
    if cfg.get("clipnorm") is not None:
        c = cfg["clipnorm"]
        grads = [g * c / max(np.sqrt(np.sum(g * g)), c) for g in grads]
    if cfg.get("global_clipnorm") is not None:
        c = cfg["global_clipnorm"]
        norm = np.sqrt(sum(np.sum(g * g) for g in grads))
        grads = [g * c * min(1 / norm, 1 / c) for g in grads]
    return grads


def _np_update(kind, cfg, w, g, s, t, lr):
    """One parameter's update; `s` is its slot dict (mutated); `t` = iterations + 1."""
    if kind == "sgd":
        mom, nesterov = cfg.get("momentum", 0.0), cfg.get("nesterov", False)
        if not mom:
            return w - lr * g
        s["v"] = mom * s.get("v", 0 * w) - lr * g
        return w + (mom * s["v"] - lr * g if nesterov else s["v"])
    if kind == "adagrad":
        s["a"] = s.get("a", np.full_like(w, cfg.get("initial_accumulator_value", 0.1))) + g * g
        return w - lr * g / np.sqrt(s["a"] + cfg.get("epsilon", 1e-7))
    if kind == "rmsprop":
        rho, eps, mom = cfg.get("rho", 0.9), cfg.get("epsilon", 1e-7), cfg.get("momentum", 0.0)
        s["s"] = rho * s.get("s", 0 * w) + (1 - rho) * g * g
        if cfg.get("centered"):
            s["a"] = rho * s.get("a", 0 * w) + (1 - rho) * g
            inc = lr * g / np.sqrt(s["s"] - s["a"] ** 2 + eps)
        else:
            inc = lr * g / np.sqrt(s["s"] + eps)
        if mom:
            s["m"] = mom * s.get("m", 0 * w) + inc
            return w - s["m"]
        return w - inc
    if kind in ("nadam", "adamax", "lion"):
        return _np_update_more(kind, cfg, w, g, s, t, lr)
    b1, b2, eps = cfg.get("beta_1", 0.9), cfg.get("beta_2", 0.999), cfg.get("epsilon", 1e-7)
    if kind == "adamw":
        w = w - w * cfg.get("weight_decay", 0.004) * lr
    s["m"] = s.get("m", 0 * w) + (g - s.get("m", 0 * w)) * (1 - b1)
    s["v"] = s.get("v", 0 * w) + (g * g - s.get("v", 0 * w)) * (1 - b2)
    v = s["v"]
    if cfg.get("amsgrad"):
        s["vhat"] = np.maximum(s.get("vhat", 0 * w), s["v"])
        v = s["vhat"]
    alpha = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    return w - s["m"] * alpha / (np.sqrt(v) + eps)


def _np_update_more(kind, cfg, w, g, s, t, lr):
    """Keras 3's Nadam, Adamax and Lion, transcribed from their docstrings and sources."""
    b1, eps = cfg.get("beta_1", 0.9), cfg.get("epsilon", 1e-7)
    if kind == "lion":
        b2 = cfg.get("beta_2", 0.99)
        m = s.get("m", 0 * w)
        s["m"] = b2 * m + (1 - b2) * g
        return w - lr * np.sign(b1 * m + (1 - b1) * g)
    b2 = cfg.get("beta_2", 0.999)
    s["m"] = s.get("m", 0 * w) + (g - s.get("m", 0 * w)) * (1 - b1)
    if kind == "adamax":
        s["u"] = np.maximum(b2 * s.get("u", 0 * w), np.abs(g))
        return w - lr * s["m"] / ((1 - b1 ** t) * (s["u"] + eps))
    u_t, u_next = b1 * (1 - 0.5 * 0.96 ** t), b1 * (1 - 0.5 * 0.96 ** (t + 1))
    s["product"] = s.get("product", 1.0) * u_t
    s["v"] = s.get("v", 0 * w) + (g * g - s.get("v", 0 * w)) * (1 - b2)
    m_hat = u_next * s["m"] / (1 - s["product"] * u_next) + (1 - u_t) * g / (1 - s["product"])
    return w - lr * m_hat / (np.sqrt(s["v"] / (1 - b2 ** t)) + eps)


def _numpy_run(kind, cfg, init, coef, lr_at, steps=STEPS):
    params = [w.astype(np.float64) for w in init]
    slots = [{} for _ in params]
    history = []
    for it in range(steps):
        grads = _clip([c * w + d for w, (c, d) in zip(params, coef)], cfg)
        params = [_np_update(kind, cfg, w, g, s, it + 1, lr_at(it))
                  for w, g, s in zip(params, grads, slots)]
        history.append(params)
    return history


CASES = [
    ("sgd", optim.SGD, {"lr": 0.1}),
    ("sgd", optim.SGD, {"lr": 0.1, "momentum": 0.9}),
    ("sgd", optim.SGD, {"lr": 0.1, "momentum": 0.8, "nesterov": True}),
    ("adagrad", optim.Adagrad, {"lr": 0.3}),
    ("adagrad", optim.Adagrad, {"lr": 0.3, "initial_accumulator_value": 0.0, "epsilon": 1e-3}),
    ("rmsprop", optim.RMSprop, {"lr": 0.05}),
    ("rmsprop", optim.RMSprop, {"lr": 0.05, "momentum": 0.5, "centered": True, "rho": 0.8}),
    ("adam", optim.Adam, {"lr": 0.1}),
    ("adam", optim.Adam, {"lr": 0.1, "amsgrad": True, "beta_1": 0.5, "epsilon": 1e-3}),
    ("adamw", optim.AdamW, {"lr": 0.1, "weight_decay": 0.1}),
    ("sgd", optim.SGD, {"lr": 0.1, "clipnorm": 1.0}),
    ("adam", optim.Adam, {"lr": 0.1, "global_clipnorm": 0.5}),
    ("rmsprop", optim.RMSprop, {"lr": 0.05, "clipvalue": 0.3}),
    ("nadam", optim.Nadam, {"lr": 0.1}),
    ("nadam", optim.Nadam, {"lr": 0.05, "beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-3}),
    ("adamax", optim.Adamax, {"lr": 0.1}),
    ("adamax", optim.Adamax, {"lr": 0.1, "beta_1": 0.5, "beta_2": 0.9, "clipnorm": 1.0}),
    ("lion", optim.Lion, {"lr": 0.05}),
    ("lion", optim.Lion, {"lr": 0.05, "beta_1": 0.5, "beta_2": 0.9}),
]
IDS = [f"{cls.__name__}-{'-'.join(f'{k}={v}' for k, v in cfg.items())}" for _, cls, cfg in CASES]


def _expected(kind, cfg, init, coef):
    return _numpy_run(kind, cfg, init, coef, lambda it: cfg["lr"])


def _assert_histories(got, expected):
    for step, (g_params, e_params) in enumerate(zip(got, expected)):
        for g, e in zip(g_params, e_params):
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5, err_msg=f"step {step + 1}")


@pytest.mark.parametrize("kind,cls,cfg", CASES, ids=IDS)
def test_rule_on_interpreter_matches_numpy(kind, cls, cfg):
    init, coef = _problem()
    _assert_histories(_run(cls(**cfg), init, coef, None), _expected(kind, cfg, init, coef))


@pytest.mark.opencl
@pytest.mark.parametrize("kind,cls,cfg", CASES, ids=IDS)
def test_rule_on_device_matches_numpy(kind, cls, cfg, cl_device):
    init, coef = _problem()
    _assert_histories(_run(cls(**cfg), init, coef, cl_device), _expected(kind, cfg, init, coef))


def test_slots_and_counter_are_state():
    init, coef = _problem()
    opt = optim.Adam(0.1, amsgrad=True)
    params, loss = _graph(init, coef)
    updates = opt.updates(loss, params)
    names = [v.name for v in opt.variables]
    assert names[:2] == ["adam/iterations", "adam/learning_rate"]
    assert "adam/p0/momentum" in names and "adam/p1/velocity_hat" in names
    assert len(updates) == 2 * 4 + 1                     # (param + 3 slots) * 2, iterations
    assert opt.slot(params[0], "velocity").dtype == np.float32
    for _ in range(3):
        _interpret_step(loss, updates)
    assert int(opt.iterations.get_value()) == 3


def test_updates_twice_share_slots():
    """A second train graph (another batch size) reuses the same state."""
    init, coef = _problem()
    opt = optim.RMSprop(0.1, momentum=0.5)
    params, loss = _graph(init, coef)
    first, second = opt.updates(loss, params), opt.updates(loss, params)
    assert [v for v, _ in first] == [v for v, _ in second]
    assert len(opt.variables) == 2 + 2 * 2


# ---- learning-rate schedules ----

SCHEDULE_CASES = [
    (optim.ExponentialDecay(0.5, 3, 0.5), lambda s: 0.5 * 0.5 ** (s / 3)),
    (optim.ExponentialDecay(0.5, 3, 0.5, staircase=True), lambda s: 0.5 * 0.5 ** (s // 3)),
    (optim.InverseTimeDecay(0.5, 2, 1.0), lambda s: 0.5 / (1 + s / 2)),
    (optim.PiecewiseConstant([2, 5], [1.0, 0.5, 0.1]),
     lambda s: 1.0 if s <= 2 else 0.5 if s <= 5 else 0.1),
    (optim.CosineDecay(0.4, 6, alpha=0.1),
     lambda s: 0.4 * (0.9 * 0.5 * (1 + math.cos(math.pi * min(s, 6) / 6)) + 0.1)),
    (optim.CosineDecay(0.1, 4, warmup_target=0.3, warmup_steps=3),
     lambda s: (0.1 + 0.2 * s / 3 if s < 3 else
                0.3 * 0.5 * (1 + math.cos(math.pi * min(s - 3, 4) / 4)))),
]


@pytest.mark.parametrize("schedule,formula", SCHEDULE_CASES,
                         ids=[repr(s) for s, _ in SCHEDULE_CASES])
def test_schedule_values(schedule, formula):
    for step in range(10):
        assert schedule.value(step) == pytest.approx(formula(step), rel=1e-5, abs=1e-7)


@pytest.mark.parametrize("schedule,formula", SCHEDULE_CASES[:4],
                         ids=[repr(s) for s, _ in SCHEDULE_CASES[:4]])
def test_schedule_drives_sgd_momentum(schedule, formula):
    init, coef = _problem(1)
    cfg = {"momentum": 0.9}
    got = _run(optim.SGD(schedule, **cfg), init, coef, None)
    _assert_histories(got, _numpy_run("sgd", cfg, init, coef, formula))


@pytest.mark.opencl
def test_schedule_and_adam_on_device(cl_device):
    init, coef = _problem(2)
    schedule, formula = SCHEDULE_CASES[5]
    got = _run(optim.Adam(learning_rate=schedule), init, coef, cl_device, steps=8)
    _assert_histories(got, _numpy_run("adam", {}, init, coef, formula, steps=8))


@pytest.mark.opencl
def test_learning_rate_set_between_calls_without_recompiling(cl_device):
    init, coef = _problem()
    opt = optim.SGD(0.1)
    params, loss = _graph(init, coef)
    step = gc.function([], loss, updates=opt.updates(loss, params), device=cl_device)
    step()
    opt.learning_rate = 0.0
    before = params[0].get_value()
    step()
    np.testing.assert_array_equal(params[0].get_value(), before)
    assert opt.learning_rate == 0.0


def test_schedule_learning_rate_cannot_be_set():
    opt = optim.Adam(optim.ExponentialDecay(0.1, 10, 0.5))
    with pytest.raises(TypeError, match="schedule"):
        opt.learning_rate = 0.2
    assert opt.learning_rate == pytest.approx(0.1)


# ---- clipping details, weight-decay exclusion, config ----

def test_clip_by_norm_leaves_small_and_zero_gradients_alone():
    g = gc.constant(np.array([0.3, 0.4], np.float32))
    np.testing.assert_allclose(gc.interpret(optim.clip_by_norm(g, 1.0)), [0.3, 0.4])
    np.testing.assert_allclose(gc.interpret(optim.clip_by_norm(g, 0.25)), [0.15, 0.2])
    zero = gc.constant(np.zeros(3, np.float32))
    np.testing.assert_array_equal(gc.interpret(optim.clip_by_norm(zero, 1.0)), 0)


def test_clipnorm_and_global_clipnorm_are_exclusive():
    with pytest.raises(ValueError, match="only one"):
        optim.SGD(0.1, clipnorm=1.0, global_clipnorm=1.0)


def test_exclude_from_weight_decay():
    init, coef = _problem()
    opt = optim.AdamW(0.1, weight_decay=0.5)
    opt.exclude_from_weight_decay(var_names=["p1"])
    got = _run(opt, init, coef, None, steps=2)
    decayed = _numpy_run("adamw", {"weight_decay": 0.5}, init, coef, lambda it: 0.1, steps=2)
    plain = _numpy_run("adam", {}, init, coef, lambda it: 0.1, steps=2)
    np.testing.assert_allclose(got[-1][0], decayed[-1][0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[-1][1], plain[-1][1], rtol=1e-4, atol=1e-5)
    assert np.abs(got[-1][0] - plain[-1][0]).max() > 1e-3


@pytest.mark.parametrize("opt", [
    optim.SGD(0.2, momentum=0.5, nesterov=True, clipnorm=2.0),
    optim.Adagrad(0.3, initial_accumulator_value=0.2),
    optim.RMSprop(0.01, centered=True),
    optim.Adam(optim.PiecewiseConstant([3], [0.1, 0.01]), amsgrad=True),
    optim.AdamW(1e-3, weight_decay=0.01, global_clipnorm=1.0),
    optim.Nadam(2e-3, beta_2=0.99),
    optim.Adamax(2e-3, epsilon=1e-6),
    optim.Lion(1e-4, beta_1=0.95, weight_decay=0.1),
], ids=lambda o: type(o).__name__)
def test_config_round_trip(opt):
    again = optim.deserialize(optim.serialize(opt))
    assert type(again) is type(opt)
    assert again.get_config() == opt.get_config()


def test_get_by_name_and_errors():
    assert isinstance(optim.get("Adam"), optim.Adam)
    assert isinstance(optim.get("sgd"), optim.SGD)
    with pytest.raises(ValueError, match="unknown optimizer"):
        optim.get("adadelta")
    with pytest.raises(ValueError, match="momentum"):
        optim.SGD(0.1, momentum=1.5)
    with pytest.raises(gc.GraphcError, match="float variables"):
        optim.SGD().build([gc.variable(np.zeros(2, np.int32), name="counts")])


# ---- torch's implementations as a second reference ----

def _torch_run(make, init, coef, steps=STEPS):
    torch = pytest.importorskip("torch")
    params = [torch.tensor(w.astype(np.float64), requires_grad=True) for w in init]
    opt = make(torch.optim, params)
    history = []
    for _ in range(steps):
        opt.zero_grad()
        loss = sum((0.5 * torch.tensor(c, dtype=torch.float64) * p * p
                    + torch.tensor(d, dtype=torch.float64) * p).sum()
                   for p, (c, d) in zip(params, coef))
        loss.backward()
        opt.step()
        history.append([p.detach().numpy().copy() for p in params])
    return history


@pytest.mark.parametrize("ours,theirs", [
    # torch's NAdam with momentum_decay=1 is Keras's 0.96**t schedule
    (lambda: optim.Nadam(0.1, epsilon=1e-7),
     lambda t, p: t.NAdam(p, lr=0.1, eps=1e-7, momentum_decay=1.0)),
    # torch adds eps inside the max: equal when eps is negligible against |g|
    (lambda: optim.Adamax(0.1, epsilon=1e-12),
     lambda t, p: t.Adamax(p, lr=0.1, eps=1e-12)),
], ids=["Nadam", "Adamax"])
def test_rule_matches_torch(ours, theirs):
    init, coef = _problem(3)
    _assert_histories(_run(ours(), init, coef, None), _torch_run(theirs, init, coef))


def test_nadam_u_product_is_saved_state():
    init, coef = _problem()
    opt = optim.Nadam(0.1)
    params, loss = _graph(init, coef)
    updates = opt.updates(loss, params)
    for _ in range(3):
        _interpret_step(loss, updates)
    state = opt.state_arrays(params)
    expected = np.prod([0.9 * (1 - 0.5 * 0.96 ** t) for t in (1, 2, 3)])
    assert state["state/u_product"] == pytest.approx(expected, rel=1e-6)
    again = optim.Nadam(0.1)
    assert again.state_target(params, "state/u_product") == ((), np.float32)
    assert again.state_target(params, "state/nothing") is None
    again.load_state_arrays(params, state)
    assert again.u_product.get_value() == pytest.approx(expected, rel=1e-6)


def test_lion_refuses_beta_1_outside_unit_interval():
    with pytest.raises(ValueError, match="sign SGD"):
        optim.Lion(beta_1=0.0)
