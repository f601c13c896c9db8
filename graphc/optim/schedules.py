"""Learning-rate schedules, Keras's rules, evaluated symbolically from the step counter.

A schedule maps the optimizer's iteration count (0 at the first update, as Keras's
`optimizer.iterations`) to a learning rate, as graph nodes inside the training step, so
the rate changes every step without recompiling. `schedule.value(step)` evaluates it on
the host with the reference interpreter.
"""
from __future__ import annotations

import math

import numpy as np

import graphc as gc
from graphc.ir import Tensor

__all__ = ["LearningRateSchedule", "ExponentialDecay", "InverseTimeDecay", "PiecewiseConstant",
           "CosineDecay", "serialize", "deserialize"]


def _as_step(step) -> Tensor:
    """The step as a float32 tensor (a Python number becomes a constant)."""
    if not isinstance(step, Tensor):
        return gc.constant(np.float32(step))
    return gc.cast(step, gc.float32)


def _floor_nonnegative(x: Tensor) -> Tensor:
    """floor(x) for x >= 0: casting to int truncates toward zero."""
    return gc.cast(gc.cast(x, gc.int32), gc.float32)


class LearningRateSchedule:
    """Base class: `schedule(step)` gives a float32 scalar tensor."""

    def __call__(self, step) -> Tensor:
        raise NotImplementedError

    def value(self, step: int) -> float:
        """The rate at `step`, computed on the host by the reference interpreter."""
        return float(gc.interpret(self(step)))

    def get_config(self) -> dict:
        """JSON-serializable constructor arguments."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict) -> "LearningRateSchedule":
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class _StepDecay(LearningRateSchedule):
    """The shared part of the decays over `step / decay_steps` (floored when `staircase`)."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, decay_rate: float,
                 staircase: bool = False):
        if decay_steps <= 0:
            raise ValueError(f"{type(self).__name__}: decay_steps must be > 0, got {decay_steps}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = int(decay_steps)
        self.decay_rate = float(decay_rate)
        self.staircase = bool(staircase)

    def progress(self, step) -> Tensor:
        """step / decay_steps, floored when `staircase`."""
        p = _as_step(step) / float(self.decay_steps)
        return _floor_nonnegative(p) if self.staircase else p

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase}


class ExponentialDecay(_StepDecay):
    """initial * decay_rate ** (step / decay_steps); the exponent floored when `staircase`."""

    def __call__(self, step) -> Tensor:
        return self.initial_learning_rate * gc.power(self.decay_rate, self.progress(step))


class InverseTimeDecay(_StepDecay):
    """initial / (1 + decay_rate * step / decay_steps); the ratio floored when `staircase`."""

    def __call__(self, step) -> Tensor:
        return self.initial_learning_rate / (1.0 + self.decay_rate * self.progress(step))


class PiecewiseConstant(LearningRateSchedule):
    """values[0] while step <= boundaries[0], values[i] while step <= boundaries[i], then
    values[-1] (Keras's rule: each boundary belongs to the interval below it)."""

    def __init__(self, boundaries, values):
        if len(values) != len(boundaries) + 1:
            raise ValueError(f"PiecewiseConstant: needs one more value than boundaries, got "
                             f"{len(boundaries)} boundaries and {len(values)} values")
        if list(boundaries) != sorted(boundaries):
            raise ValueError(f"PiecewiseConstant: boundaries must increase, got {boundaries}")
        self.boundaries = [int(b) if float(b).is_integer() else float(b) for b in boundaries]
        self.values = [float(v) for v in values]

    def __call__(self, step) -> Tensor:
        step = _as_step(step)
        rate = gc.constant(np.float32(self.values[-1]))
        for boundary, value in zip(reversed(self.boundaries), reversed(self.values[:-1])):
            rate = gc.where(gc.less_equal(step, float(boundary)), np.float32(value), rate)
        return rate

    def get_config(self) -> dict:
        return {"boundaries": list(self.boundaries), "values": list(self.values)}


class CosineDecay(LearningRateSchedule):
    """Cosine decay from `initial_learning_rate` (or, after a linear warmup to
    `warmup_target`, from that) to `alpha` times it over `decay_steps` (Loshchilov & Hutter's
    SGDR without restarts, as Keras writes it)."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, alpha: float = 0.0,
                 warmup_target: float | None = None, warmup_steps: int = 0):
        if decay_steps <= 0:
            raise ValueError(f"CosineDecay: decay_steps must be > 0, got {decay_steps}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_steps = int(decay_steps)
        self.alpha = float(alpha)
        self.warmup_target = None if warmup_target is None else float(warmup_target)
        self.warmup_steps = int(warmup_steps)

    def _decay(self, step: Tensor, start: float) -> Tensor:
        fraction = step / float(self.decay_steps)
        cosine = 0.5 * (1.0 + gc.cos(math.pi * fraction))
        return start * ((1.0 - self.alpha) * cosine + self.alpha)

    def __call__(self, step) -> Tensor:
        step = _as_step(step)
        if self.warmup_target is None:
            return self._decay(gc.minimum(step, float(self.decay_steps)),
                               self.initial_learning_rate)
        total = float(self.decay_steps + self.warmup_steps)
        step = gc.minimum(step, total)
        warmup = max(self.warmup_steps, 1)
        delta = self.warmup_target - self.initial_learning_rate
        warming = delta * (step / float(warmup)) + self.initial_learning_rate
        decaying = self._decay(gc.maximum(step - float(self.warmup_steps), 0.0),
                               self.warmup_target)
        return gc.where(gc.less(step, float(self.warmup_steps)), warming, decaying)

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "alpha": self.alpha,
                "warmup_target": self.warmup_target, "warmup_steps": self.warmup_steps}


SCHEDULES = {cls.__name__: cls for cls in (ExponentialDecay, InverseTimeDecay,
                                           PiecewiseConstant, CosineDecay)}


def serialize(schedule: LearningRateSchedule) -> dict:
    """{'class_name': ..., 'config': ...} for a saved optimizer."""
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def deserialize(config: dict) -> LearningRateSchedule:
    """The schedule `serialize` described."""
    name = config.get("class_name")
    if name not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {name!r} (known: "
                         f"{', '.join(sorted(SCHEDULES))})")
    return SCHEDULES[name].from_config(config["config"])
