"""SGD, Adagrad, RMSprop, Adam and AdamW: Keras 3's published update rules.

Each `update_step` returns the new parameter and slot values as graph nodes. Notation:
`g` gradient (after clipping), `lr` the rate of this step, `t = iterations + 1`.
"""
from __future__ import annotations

import graphc as gc
from graphc.ir import Tensor
from graphc.optim.base import Optimizer, Update


class SGD(Optimizer):
    """Gradient descent with optional (Nesterov) momentum, Keras's form.

    momentum == 0:  w <- w - lr * g
    otherwise:      v <- momentum * v - lr * g
                    w <- w + v                          (nesterov=False)
                    w <- w + momentum * v - lr * g      (nesterov=True, with the new v)
    """

    default_name = "SGD"

    def __init__(self, lr=0.01, momentum: float = 0.0, nesterov: bool = False, **kwargs):
        if not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"SGD: momentum must be in [0, 1], got {momentum}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.slot_names = ("momentum",) if self.momentum else ()
        super().__init__(lr, **kwargs)

    def update_step(self, grad, param, slots, lr) -> tuple[Tensor, list[Update]]:
        if not self.momentum:
            return param - lr * grad, []
        velocity = slots["momentum"]
        new_velocity = self.momentum * velocity - lr * grad
        step = self.momentum * new_velocity - lr * grad if self.nesterov else new_velocity
        return param + step, [(velocity, new_velocity)]

    def get_config(self) -> dict:
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adagrad(Optimizer):
    """Adagrad (Duchi et al. 2011), Keras 3's form (epsilon inside the square root).

    a <- a + g**2                  (a starts at initial_accumulator_value)
    w <- w - lr * g / sqrt(a + epsilon)
    """

    default_name = "adagrad"
    slot_names = ("accumulator",)

    def __init__(self, lr=0.001, initial_accumulator_value: float = 0.1,
                 epsilon: float = 1e-7, **kwargs):
        self.initial_accumulator_value = float(initial_accumulator_value)
        self.epsilon = float(epsilon)
        super().__init__(lr, **kwargs)

    def slot_initial_value(self, slot: str) -> float:
        return self.initial_accumulator_value

    def update_step(self, grad, param, slots, lr) -> tuple[Tensor, list[Update]]:
        accumulator = slots["accumulator"]
        new_accumulator = accumulator + gc.square(grad)
        new_param = param - lr * grad / gc.sqrt(new_accumulator + self.epsilon)
        return new_param, [(accumulator, new_accumulator)]

    def get_config(self) -> dict:
        return {**super().get_config(), "epsilon": self.epsilon,
                "initial_accumulator_value": self.initial_accumulator_value}


class RMSprop(Optimizer):
    """RMSprop (Hinton 2012), Keras 3's form (epsilon inside the square root).

    s <- rho * s + (1 - rho) * g**2
    a <- rho * a + (1 - rho) * g;  denominator = s - a**2 + epsilon   (centered)
                                   denominator = s + epsilon          (otherwise)
    increment = lr * g / sqrt(denominator)
    w <- w - increment, or with momentum:  m <- momentum * m + increment;  w <- w - m
    """

    default_name = "rmsprop"

    def __init__(self, lr=0.001, rho: float = 0.9, momentum: float = 0.0,
                 epsilon: float = 1e-7, centered: bool = False, **kwargs):
        self.rho = float(rho)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.centered = bool(centered)
        self.slot_names = (("velocity",) + (("momentum",) if self.momentum > 0 else ())
                           + (("average_gradient",) if self.centered else ()))
        super().__init__(lr, **kwargs)

    def update_step(self, grad, param, slots, lr) -> tuple[Tensor, list[Update]]:
        rho = self.rho
        velocity = slots["velocity"]
        new_velocity = rho * velocity + (1 - rho) * gc.square(grad)
        updates = [(velocity, new_velocity)]
        if self.centered:
            average = slots["average_gradient"]
            new_average = rho * average + (1 - rho) * grad
            updates.append((average, new_average))
            denominator = new_velocity - gc.square(new_average) + self.epsilon
        else:
            denominator = new_velocity + self.epsilon
        increment = lr * grad / gc.sqrt(denominator)
        if self.momentum > 0:
            momentum = slots["momentum"]
            new_momentum = self.momentum * momentum + increment
            updates.append((momentum, new_momentum))
            return param - new_momentum, updates
        return param - increment, updates

    def get_config(self) -> dict:
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}


class Adam(Optimizer):
    """Adam (Kingma & Ba 2014) in Keras's "epsilon hat" form (the formula just before
    section 2.1 of the paper, not Algorithm 1):

    m <- m + (g - m) * (1 - beta_1)
    v <- v + (g**2 - v) * (1 - beta_2)
    v_hat <- max(v_hat, v); v = v_hat                          (amsgrad only)
    alpha = lr * sqrt(1 - beta_2**t) / (1 - beta_1**t)
    w <- w - alpha * m / (sqrt(v) + epsilon)
    """

    default_name = "adam"

    def __init__(self, lr=0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, amsgrad: bool = False, **kwargs):
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.amsgrad = bool(amsgrad)
        self.slot_names = ("momentum", "velocity") + (("velocity_hat",) if amsgrad else ())
        super().__init__(lr, **kwargs)

    def update_step(self, grad, param, slots, lr) -> tuple[Tensor, list[Update]]:
        t = self.local_step(param.dtype)
        alpha = lr * gc.sqrt(1 - gc.power(self.beta_2, t)) / (1 - gc.power(self.beta_1, t))
        m, v = slots["momentum"], slots["velocity"]
        new_m = m + (grad - m) * (1 - self.beta_1)
        new_v = v + (gc.square(grad) - v) * (1 - self.beta_2)
        updates = [(m, new_m), (v, new_v)]
        if self.amsgrad:
            v_hat = slots["velocity_hat"]
            new_v = gc.maximum(v_hat, new_v)
            updates.append((v_hat, new_v))
        return param - new_m * alpha / (gc.sqrt(new_v) + self.epsilon), updates

    def get_config(self) -> dict:
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon, "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), as Keras 3:
    w <- w - w * weight_decay * lr first, then Adam's step (its gradient taken at the old w).
    """

    default_name = "adamw"

    def __init__(self, lr=0.001, weight_decay: float = 0.004, beta_1: float = 0.9,
                 beta_2: float = 0.999, epsilon: float = 1e-7, amsgrad: bool = False,
                 **kwargs):
        super().__init__(lr, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, amsgrad=amsgrad,
                         weight_decay=weight_decay, **kwargs)


from graphc.optim.adam_family import Adamax, Lion, Nadam  # noqa: E402  (they import base)

OPTIMIZERS = {"sgd": SGD, "adagrad": Adagrad, "rmsprop": RMSprop, "adam": Adam,
              "adamw": AdamW, "nadam": Nadam, "adamax": Adamax, "lion": Lion}


def get(identifier) -> Optimizer:
    """An optimizer from a name ('adam'), a serialized dict, or an Optimizer (as is)."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in OPTIMIZERS:
        return OPTIMIZERS[identifier.lower()]()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    raise ValueError(f"unknown optimizer {identifier!r} (known: {', '.join(OPTIMIZERS)})")


def serialize(optimizer: Optimizer) -> dict:
    """{'class_name': ..., 'config': ...}."""
    return {"class_name": type(optimizer).__name__, "config": optimizer.get_config()}


def deserialize(config: dict) -> Optimizer:
    """The optimizer `serialize` described."""
    from graphc.optim.loss_scale import LossScaleOptimizer
    classes = {cls.__name__: cls for cls in OPTIMIZERS.values()}
    classes["LossScaleOptimizer"] = LossScaleOptimizer
    name = config.get("class_name")
    if name not in classes:
        raise ValueError(f"unknown optimizer class {name!r} (known: {', '.join(classes)})")
    return classes[name].from_config(config["config"])
