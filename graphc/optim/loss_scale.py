"""Keras's LossScaleOptimizer: dynamic loss scaling for float16 training, as graph updates.

Each step differentiates `loss * scale`, divides the gradients by `scale`, and applies the
inner optimizer only if every gradient is finite; in the same compiled step the scale is
halved after a step with an inf or NaN gradient (the step is skipped: weights, slots and the
iteration count keep their values) and doubled after `dynamic_growth_steps` finite steps in
a row (Keras 3's rule). There is no branch on the device: every update is
`where(finite, new, old)`, fused into the update kernels.
"""
from __future__ import annotations

import numpy as np

import graphc as gc
from graphc.ir import Tensor
from graphc.optim.base import Optimizer, Update


def all_finite(grads: list[Tensor]) -> Tensor:
    """A bool scalar: no inf or NaN in any gradient (g * 0 is 0, or NaN for inf and NaN;
    graphc's simplifier keeps x * 0 for that reason)."""
    total = sum(gc.sum(gc.cast(g, gc.float32) * 0.0) for g in grads)
    return gc.equal(total, 0.0)


class LossScaleOptimizer(Optimizer):
    """LossScaleOptimizer(inner_optimizer, initial_scale=2**15, dynamic_growth_steps=2000)."""

    default_name = "loss_scale_optimizer"

    def __init__(self, inner_optimizer, initial_scale: float = 2.0 ** 15,
                 dynamic_growth_steps: int = 2000, name: str | None = None):
        from graphc.optim.optimizers import get
        self.inner_optimizer = get(inner_optimizer)
        if isinstance(self.inner_optimizer, LossScaleOptimizer):
            raise ValueError("LossScaleOptimizer: the inner optimizer scales the loss already")
        if not float(initial_scale) > 0 or int(dynamic_growth_steps) < 1:
            raise ValueError(f"LossScaleOptimizer: initial_scale > 0 and dynamic_growth_steps"
                             f" >= 1 wanted, got {initial_scale}, {dynamic_growth_steps}")
        self.name = name or self.default_name
        self.initial_scale = float(initial_scale)
        self.dynamic_growth_steps = int(dynamic_growth_steps)
        self.iterations = self.inner_optimizer.iterations
        self.dynamic_scale = gc.variable(np.float32(initial_scale),
                                         name=f"{self.name}/dynamic_scale")
        self.step_counter = gc.variable(np.int32(0), name=f"{self.name}/step_counter")

    # ---- what the inner optimizer decides ----

    @property
    def learning_rate(self) -> float:
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, value) -> None:
        self.inner_optimizer.learning_rate = value

    lr = learning_rate

    @property
    def slot_names(self):
        return self.inner_optimizer.slot_names

    def slot(self, param: Tensor, slot: str) -> Tensor:
        return self.inner_optimizer.slot(param, slot)

    def build(self, params) -> None:
        self.inner_optimizer.build(params)

    @property
    def variables(self) -> list[Tensor]:
        return [self.dynamic_scale, self.step_counter] + self.inner_optimizer.variables

    # ---- the step ----

    def scale_loss(self, loss: Tensor) -> Tensor:
        """loss * the current scale (what `updates` differentiates)."""
        return loss * gc.cast(self.dynamic_scale, loss.dtype)

    def updates(self, loss: Tensor, params, disconnected: str = "raise") -> list[Update]:
        params = list(params)
        grads = gc.grad(self.scale_loss(loss), params, disconnected=disconnected)
        return self.apply_gradients(zip(grads, params))

    def apply_gradients(self, grads_and_params) -> list[Update]:
        """Updates from gradients of the *scaled* loss (as Keras's apply)."""
        pairs = list(grads_and_params)
        finite = all_finite([g for g, _ in pairs])
        scale = self.dynamic_scale
        unscaled = [(g / gc.cast(scale, g.dtype), p) for g, p in pairs]
        inner = self.inner_optimizer.apply_gradients(unscaled)
        guarded = [(variable, gc.where(finite, new, variable)) for variable, new in inner]
        at_growth = gc.logical_and(finite, gc.equal(self.step_counter,
                                                    self.dynamic_growth_steps - 1))
        new_scale = gc.where(finite, gc.where(at_growth, scale * 2.0, scale), scale * 0.5)
        new_counter = gc.where(finite, gc.where(at_growth, 0, self.step_counter + 1), 0)
        return guarded + [(scale, new_scale), (self.step_counter, new_counter)]

    # ---- state and config ----

    def state_arrays(self, params) -> dict[str, np.ndarray]:
        state = self.inner_optimizer.state_arrays(params)
        state["loss_scale/dynamic_scale"] = self.dynamic_scale.get_value()
        state["loss_scale/step_counter"] = self.step_counter.get_value()
        return state

    def load_state_arrays(self, params, state: dict[str, np.ndarray]) -> None:
        own = {"loss_scale/dynamic_scale": self.dynamic_scale,
               "loss_scale/step_counter": self.step_counter}
        for key in [k for k in state if k in own]:
            own[key].set_value(state[key])
        self.inner_optimizer.load_state_arrays(
            params, {k: v for k, v in state.items() if k not in own})

    def state_target(self, params, key: str):
        if key == "loss_scale/dynamic_scale":
            return (), np.dtype(np.float32)
        if key == "loss_scale/step_counter":
            return (), np.dtype(np.int32)
        return self.inner_optimizer.state_target(params, key)

    def get_config(self) -> dict:
        from graphc.optim.optimizers import serialize
        return {"name": self.name, "inner_optimizer": serialize(self.inner_optimizer),
                "initial_scale": self.initial_scale,
                "dynamic_growth_steps": self.dynamic_growth_steps}

    @classmethod
    def from_config(cls, config: dict) -> "LossScaleOptimizer":
        from graphc.optim.optimizers import deserialize
        config = dict(config)
        return cls(deserialize(config.pop("inner_optimizer")), **config)
