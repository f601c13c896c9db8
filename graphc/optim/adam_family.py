"""Nadam, Adamax and Lion: Keras 3's published update rules, as graph updates.

Notation as in optimizers.py: `g` the gradient (after clipping), `lr` the rate of this
step, `t = iterations + 1`.
"""
from __future__ import annotations

import numpy as np

import graphc as gc
from graphc.ir import Tensor
from graphc.optim.base import Optimizer, Update

NADAM_DECAY = 0.96


class Nadam(Optimizer):
    """Adam with Nesterov momentum (Dozat 2015), Keras 3's form:

    u_t = beta_1 * (1 - 0.5 * 0.96**t),  u_t1 = beta_1 * (1 - 0.5 * 0.96**(t + 1))
    P <- P * u_t                          (optimizer-wide u_product, from 1)
    m <- m + (g - m) * (1 - beta_1);  v <- v + (g**2 - v) * (1 - beta_2)
    m_hat = u_t1 * m / (1 - P * u_t1) + (1 - u_t) * g / (1 - P)
    v_hat = v / (1 - beta_2**t)
    w <- w - lr * m_hat / (sqrt(v_hat) + epsilon)
    """

    default_name = "nadam"
    slot_names = ("momentum", "velocity")

    def __init__(self, lr=0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, **kwargs):
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)
        super().__init__(lr, **kwargs)
        self.u_product = self.state_variable("u_product", np.float32(1.0))
        self._new_u_product: Tensor | None = None

    def _u(self, step: Tensor) -> Tensor:
        return self.beta_1 * (1.0 - 0.5 * gc.power(NADAM_DECAY, step))

    def step_state_updates(self) -> list[Update]:
        self._new_u_product = self.u_product * self._u(self.local_step(gc.float32))
        return [(self.u_product, self._new_u_product)]

    def update_step(self, grad, param, slots, lr) -> tuple[Tensor, list[Update]]:
        t = self.local_step(param.dtype)
        u_t, u_next = self._u(t), self._u(t + 1.0)
        product = gc.cast(self._new_u_product, param.dtype)
        m, v = slots["momentum"], slots["velocity"]
        new_m = m + (grad - m) * (1 - self.beta_1)
        new_v = v + (gc.square(grad) - v) * (1 - self.beta_2)
        m_hat = u_next * new_m / (1 - product * u_next) + (1 - u_t) * grad / (1 - product)
        v_hat = new_v / (1 - gc.power(self.beta_2, t))
        return param - lr * m_hat / (gc.sqrt(v_hat) + self.epsilon), [(m, new_m), (v, new_v)]

    def get_config(self) -> dict:
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


class Adamax(Optimizer):
    """Adam on the infinity norm (Kingma & Ba 2014, section 7.1), Keras 3's form:

    m <- m + (g - m) * (1 - beta_1)
    u <- max(beta_2 * u, |g|)
    w <- w - lr * m / ((1 - beta_1**t) * (u + epsilon))
    """

    default_name = "adamax"
    slot_names = ("momentum", "norm")

    def __init__(self, lr=0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, **kwargs):
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)
        super().__init__(lr, **kwargs)

    def update_step(self, grad, param, slots, lr) -> tuple[Tensor, list[Update]]:
        t = self.local_step(param.dtype)
        m, u = slots["momentum"], slots["norm"]
        new_m = m + (grad - m) * (1 - self.beta_1)
        new_u = gc.maximum(self.beta_2 * u, gc.abs(grad))
        step = lr * new_m / ((1 - gc.power(self.beta_1, t)) * (new_u + self.epsilon))
        return param - step, [(m, new_m), (u, new_u)]

    def get_config(self) -> dict:
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


class Lion(Optimizer):
    """Lion (Chen et al. 2023), Keras 3's form:

    w <- w - lr * sign(beta_1 * m + (1 - beta_1) * g)
    m <- beta_2 * m + (1 - beta_2) * g
    """

    default_name = "lion"
    slot_names = ("momentum",)

    def __init__(self, lr=0.001, beta_1: float = 0.9, beta_2: float = 0.99, **kwargs):
        if not 0.0 < float(beta_1) <= 1.0:
            raise ValueError(f"Lion: beta_1 must be in (0, 1] (else it is sign SGD), got "
                             f"{beta_1}")
        self.beta_1, self.beta_2 = float(beta_1), float(beta_2)
        super().__init__(lr, **kwargs)

    def update_step(self, grad, param, slots, lr) -> tuple[Tensor, list[Update]]:
        m = slots["momentum"]
        direction = gc.sign(self.beta_1 * m + (1.0 - self.beta_1) * grad)
        new_m = self.beta_2 * m + (1.0 - self.beta_2) * grad
        return param - lr * direction, [(m, new_m)]

    def get_config(self) -> dict:
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2}
