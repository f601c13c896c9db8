"""The optimizer base: slots, the iteration counter, learning rate, clipping, weight decay.

An optimizer builds update pairs `(variable, new value)` as graph nodes; `gc.function`
compiles them with the forward and backward pass into one program whose update kernels
write the variables in place. The order of each step follows Keras 3
(`BaseOptimizer.apply`): clip the gradients (`clipvalue`, then `clipnorm` per tensor or
`global_clipnorm` over all of them), decay the weights (`w -= w * weight_decay * lr`,
decoupled, Loshchilov & Hutter), apply the optimizer's rule, then add one to `iterations`.
The learning rate is read at the iteration count before the increment.
"""
from __future__ import annotations

import re

import numpy as np

import graphc as gc
from graphc.ir import Tensor
from graphc.optim import schedules
from graphc.optim.schedules import LearningRateSchedule

Update = tuple[Tensor, Tensor]


class Optimizer:
    """Base class; subclasses list their `slot_names` and write `update_step`."""

    slot_names: tuple[str, ...] = ()
    default_name = "optimizer"

    def __init__(self, lr=0.001, *, learning_rate=None, weight_decay: float | None = None,
                 clipnorm: float | None = None, clipvalue: float | None = None,
                 global_clipnorm: float | None = None, name: str | None = None):
        if clipnorm is not None and global_clipnorm is not None:
            raise ValueError("only one of clipnorm and global_clipnorm can be set")
        lr = lr if learning_rate is None else learning_rate
        self.name = name or self.default_name
        self.weight_decay = None if weight_decay is None else float(weight_decay)
        self.clipnorm = None if clipnorm is None else float(clipnorm)
        self.clipvalue = None if clipvalue is None else float(clipvalue)
        self.global_clipnorm = None if global_clipnorm is None else float(global_clipnorm)
        self.iterations = gc.variable(np.int32(0), name=f"{self.name}/iterations")
        self._schedule: LearningRateSchedule | None = None
        self._lr_variable: Tensor | None = None
        self._set_learning_rate(lr)
        self._params: list[Tensor] = []
        self._slots: dict[Tensor, dict[str, Tensor]] = {}
        self._state: dict[str, Tensor] = {}     # optimizer-wide values (Nadam's u_product)
        self._no_decay_names: list[str] = []
        self._no_decay: set = set()

    # ---- learning rate ----

    def _set_learning_rate(self, lr) -> None:
        if isinstance(lr, LearningRateSchedule):
            self._schedule = lr
        elif self._schedule is not None:
            raise TypeError("this optimizer was made with a learning-rate schedule: its rate"
                            " cannot be set to a number")
        elif self._lr_variable is None:
            self._lr_variable = gc.variable(np.float32(lr), name=f"{self.name}/learning_rate")
        else:
            self._lr_variable.set_value(np.float32(lr))

    @property
    def learning_rate(self) -> float:
        """The current rate (a schedule is evaluated at the current iteration)."""
        if self._schedule is not None:
            return self._schedule.value(int(self.iterations.get_value()))
        return float(self._lr_variable.get_value())

    @learning_rate.setter
    def learning_rate(self, value) -> None:
        self._set_learning_rate(value)

    lr = learning_rate

    def learning_rate_tensor(self) -> Tensor:
        """The symbolic rate of the coming step."""
        if self._schedule is not None:
            return self._schedule(self.iterations)
        return self._lr_variable

    # ---- slots ----

    def slot_initial_value(self, slot: str) -> float:
        """The value a slot starts from (zeros unless the rule says otherwise)."""
        return 0.0

    def build(self, params) -> None:
        """Create the slot variables of `params` (once per parameter)."""
        for param in params:
            if param in self._slots:
                continue
            if param.role != "variable" or param.dtype.kind != "f":
                raise gc.GraphcError(f"{self.name}: can only train float variables, got "
                                     f"{param!r}")
            self._params.append(param)
            self._slots[param] = {
                slot: gc.variable(np.full(param.shape, self.slot_initial_value(slot),
                                          param.dtype), name=f"{self.name}/{param.name}/{slot}")
                for slot in self.slot_names}

    def slot(self, param: Tensor, slot: str) -> Tensor:
        """The slot variable `slot` of `param`."""
        return self._slots[param][slot]

    def state_variable(self, name: str, value) -> Tensor:
        """An optimizer-wide state variable (made once; saved as `name`)."""
        if name not in self._state:
            self._state[name] = gc.variable(value, name=f"{self.name}/{name}")
        return self._state[name]

    @property
    def variables(self) -> list[Tensor]:
        """The optimizer's own state: iterations, the rate variable, optimizer-wide state,
        then slots per param."""
        own = [self.iterations] + ([self._lr_variable] if self._lr_variable is not None else [])
        own += list(self._state.values())
        return own + [v for p in self._params for v in self._slots[p].values()]

    # ---- weight decay ----

    def exclude_from_weight_decay(self, var_list=None, var_names=None) -> None:
        """Skip weight decay for these variables, or variables whose name matches a pattern."""
        self._no_decay.update(var_list or [])
        self._no_decay_names.extend(var_names or [])

    def _decays(self, param: Tensor) -> bool:
        if not self.weight_decay or param in self._no_decay:
            return False
        return not any(re.search(p, param.name or "") for p in self._no_decay_names)

    # ---- the step ----

    def updates(self, loss: Tensor, params, disconnected: str = "raise") -> list[Update]:
        """Differentiate `loss` by `params` and return every update pair of one step."""
        params = list(params)
        grads = gc.grad(loss, params, disconnected=disconnected)
        return self.apply_gradients(zip(grads, params))

    def apply_gradients(self, grads_and_params) -> list[Update]:
        """Update pairs for params, slots and the iteration counter, from given gradients."""
        pairs = list(grads_and_params)
        grads, params = [g for g, _ in pairs], [p for _, p in pairs]
        self.build(params)
        grads = self._clip(grads)
        lr = self.learning_rate_tensor()
        updates: list[Update] = self.step_state_updates()
        for grad, param in zip(grads, params):
            lr_p = gc.cast(lr, param.dtype)
            start = param - param * (self.weight_decay * lr_p) if self._decays(param) else param
            new_param, slot_updates = self.update_step(gc.cast(grad, param.dtype), start,
                                                       self._slots[param], lr_p)
            updates.append((param, new_param))
            updates.extend(slot_updates)
        updates.append((self.iterations, self.iterations + 1))
        return updates

    def local_step(self, dtype) -> Tensor:
        """iterations + 1, as a float of `dtype` (the `t` of bias corrections)."""
        # cast first: an `iterations + 1` node shared with the counter's own update made
        # the fuser build a kernel cycle (see the report on fusion/schedule)
        return gc.cast(self.iterations, dtype) + 1.0

    def step_state_updates(self) -> list[Update]:
        """Updates of optimizer-wide state made once per step, before the parameters'
        (their new values may be read by update_step)."""
        return []

    def update_step(self, grad: Tensor, param: Tensor, slots: dict[str, Tensor],
                    lr: Tensor) -> tuple[Tensor, list[Update]]:
        """The new value of `param` and the slot updates, given its gradient."""
        raise NotImplementedError

    def _clip(self, grads: list[Tensor]) -> list[Tensor]:
        if self.clipvalue is not None:
            grads = [gc.clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        if self.clipnorm is not None:
            grads = [clip_by_norm(g, self.clipnorm) for g in grads]
        if self.global_clipnorm is not None:
            grads = clip_by_global_norm(grads, self.global_clipnorm)
        return grads

    # ---- state and config ----

    def state_arrays(self, params) -> dict[str, np.ndarray]:
        """iterations, the rate and every slot of `params` (keyed by position), for saving."""
        state = {"iterations": self.iterations.get_value()}
        if self._lr_variable is not None:
            state["learning_rate"] = self._lr_variable.get_value()
        for name, variable in self._state.items():
            state[f"state/{name}"] = variable.get_value()
        for i, param in enumerate(params):
            for slot, variable in self._slots.get(param, {}).items():
                state[f"slots/{i}/{slot}"] = variable.get_value()
        return state

    def load_state_arrays(self, params, state: dict[str, np.ndarray]) -> None:
        """Restore what `state_arrays` gave: slots are built for `params` first."""
        params = list(params)
        if any(key.startswith("slots/") for key in state):
            self.build(params)
        variables = {"iterations": self.iterations, "learning_rate": self._lr_variable}
        variables.update({f"state/{name}": v for name, v in self._state.items()})
        for i, param in enumerate(params):
            for slot, variable in self._slots.get(param, {}).items():
                variables[f"slots/{i}/{slot}"] = variable
        for key, value in state.items():
            if variables.get(key) is None:
                raise KeyError(f"{self.name}: no optimizer variable for saved state {key!r}")
            variables[key].set_value(value)

    def state_target(self, params, key: str):
        """(shape, dtype) of saved state `key` for `params`, or None if it has no variable
        for it (a file's key is checked against this before its array is read)."""
        if key == "iterations":
            return (), self.iterations.dtype
        if key == "learning_rate":
            return ((), np.dtype(np.float32)) if self._lr_variable is not None else None
        if key.startswith("state/"):
            variable = self._state.get(key[len("state/"):])
            return None if variable is None else (tuple(variable.shape), variable.dtype)
        match = re.fullmatch(r"slots/(\d+)/(\w+)", key)
        if match is None or int(match.group(1)) >= len(params) or \
                match.group(2) not in self.slot_names:
            return None
        param = params[int(match.group(1))]
        return tuple(param.shape), param.dtype

    def get_config(self) -> dict:
        """JSON-serializable constructor arguments (a schedule as its own config)."""
        lr = (schedules.serialize(self._schedule) if self._schedule is not None
              else self.learning_rate)
        return {"name": self.name, "learning_rate": lr, "weight_decay": self.weight_decay,
                "clipnorm": self.clipnorm, "clipvalue": self.clipvalue,
                "global_clipnorm": self.global_clipnorm}

    @classmethod
    def from_config(cls, config: dict) -> "Optimizer":
        config = dict(config)
        lr = config.pop("learning_rate")
        if isinstance(lr, dict):
            lr = schedules.deserialize(lr)
        return cls(learning_rate=lr, **config)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.get_config()})"


def clip_by_norm(grad: Tensor, clip_norm: float) -> Tensor:
    """grad * clip_norm / max(||grad||, clip_norm): Keras's per-tensor clipnorm."""
    l2sum = gc.sum(gc.square(grad))
    positive = gc.greater(l2sum, 0.0)
    norm = gc.where(positive, gc.sqrt(gc.where(positive, l2sum, 1.0)), l2sum)
    return grad * clip_norm / gc.maximum(norm, clip_norm)


def clip_by_global_norm(grads: list[Tensor], clip_norm: float) -> list[Tensor]:
    """Scale every gradient by clip_norm * min(1/global_norm, 1/clip_norm) (Keras's rule)."""
    total = gc.sqrt(sum(gc.sum(gc.square(gc.cast(g, gc.float32))) for g in grads))
    scale = clip_norm * gc.minimum(1.0 / total, 1.0 / clip_norm)
    scale = scale + (total - total)            # NaN when the norm is not finite, as Keras
    return [g * gc.cast(scale, g.dtype) for g in grads]
