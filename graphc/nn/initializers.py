"""Weight initializers, Keras's rules: `init(shape, dtype=float32) -> np.ndarray`.

Fans follow Keras: a kernel's last two axes are (in, out) and the others a receptive
field (conv layers pass Keras's HWIO shape and transpose). Randomness is seeded: an
initializer with a `seed` draws the same values at every call; one without draws from a
generator seeded by graphc's global seed (gc.random.set_seed) and a counter, so the same
program after the same `set_seed` builds identical weights.
"""
from __future__ import annotations

import math

import numpy as np

from graphc.ops.random import derived_seed as _derived_seed

__all__ = ["Initializer", "Zeros", "Ones", "Constant", "RandomUniform", "RandomNormal",
           "TruncatedNormal", "VarianceScaling", "GlorotUniform", "GlorotNormal", "HeUniform",
           "HeNormal", "LecunUniform", "LecunNormal", "Orthogonal", "get", "serialize",
           "compute_fans"]

# stddev of a unit normal truncated to [-2, 2]: VarianceScaling divides by it (as Keras)
_TRUNCATED_STD = 0.87962566103423978


def compute_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """Keras's (fan_in, fan_out): (in, out) on the last two axes, times the receptive field."""
    shape = tuple(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    field = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return shape[-2] * field, shape[-1] * field


class Initializer:
    """Base: `seed` fixes the draws; `draw(rng, shape)` makes them."""

    def __init__(self, seed: int | None = None):
        self.seed = seed

    def rng(self) -> np.random.Generator:
        """A generator from the seed, or from the global seed and the op counter."""
        return np.random.default_rng(self.seed if self.seed is not None else _derived_seed(None))

    def __call__(self, shape, dtype=np.float32) -> np.ndarray:
        shape = tuple(int(d) for d in shape)
        return np.asarray(self.draw(self.rng(), shape), dtype=dtype)

    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {"seed": self.seed}

    @classmethod
    def from_config(cls, config: dict) -> "Initializer":
        return cls(**config)


class Constant(Initializer):
    """Every element `value`."""

    def __init__(self, value: float = 0.0):
        super().__init__(None)
        self.value = float(value)

    def draw(self, rng, shape):
        return np.full(shape, self.value)

    def get_config(self) -> dict:
        return {"value": self.value}


class Zeros(Constant):
    """All zeros."""

    def __init__(self):
        super().__init__(0.0)

    def get_config(self) -> dict:
        return {}


class Ones(Constant):
    """All ones."""

    def __init__(self):
        super().__init__(1.0)

    def get_config(self) -> dict:
        return {}


class RandomUniform(Initializer):
    """Uniform in [minval, maxval)."""

    def __init__(self, minval: float = -0.05, maxval: float = 0.05, seed: int | None = None):
        super().__init__(seed)
        self.minval, self.maxval = float(minval), float(maxval)

    def draw(self, rng, shape):
        return rng.uniform(self.minval, self.maxval, shape)

    def get_config(self) -> dict:
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


class RandomNormal(Initializer):
    """Normal of `mean` and `stddev`."""

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None):
        super().__init__(seed)
        self.mean, self.stddev = float(mean), float(stddev)

    def draw(self, rng, shape):
        return rng.normal(self.mean, self.stddev, shape)

    def get_config(self) -> dict:
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


def truncated_normal(rng: np.random.Generator, shape, stddev: float) -> np.ndarray:
    """Normal draws of `stddev`, redrawn until within two standard deviations."""
    values = rng.standard_normal(shape)
    outside = np.abs(values) > 2.0
    while outside.any():
        values[outside] = rng.standard_normal(int(outside.sum()))
        outside = np.abs(values) > 2.0
    return values * stddev


class TruncatedNormal(RandomNormal):
    """Normal of `mean` and `stddev`, cut at two standard deviations."""

    def draw(self, rng, shape):
        return self.mean + truncated_normal(rng, shape, self.stddev)


class VarianceScaling(Initializer):
    """Variance scale / n, n the fan in, out or their average (Keras's VarianceScaling)."""

    def __init__(self, scale: float = 1.0, mode: str = "fan_in",
                 distribution: str = "truncated_normal", seed: int | None = None):
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"VarianceScaling: mode must be fan_in, fan_out or fan_avg, "
                             f"got {mode!r}")
        if distribution not in ("truncated_normal", "untruncated_normal", "uniform"):
            raise ValueError(f"VarianceScaling: unknown distribution {distribution!r}")
        super().__init__(seed)
        self.scale, self.mode, self.distribution = float(scale), mode, distribution

    def draw(self, rng, shape):
        fan_in, fan_out = compute_fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        variance = self.scale / max(1.0, n)
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            return rng.uniform(-limit, limit, shape)
        if self.distribution == "untruncated_normal":
            return rng.normal(0.0, math.sqrt(variance), shape)
        return truncated_normal(rng, shape, math.sqrt(variance) / _TRUNCATED_STD)

    def get_config(self) -> dict:
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                "seed": self.seed}


def _preset(name: str, scale: float, mode: str, distribution: str, doc: str) -> type:
    def __init__(self, seed: int | None = None):
        VarianceScaling.__init__(self, scale, mode, distribution, seed)

    def get_config(self) -> dict:
        return {"seed": self.seed}

    return type(name, (VarianceScaling,), {"__init__": __init__, "get_config": get_config,
                                           "__doc__": doc})


GlorotUniform = _preset("GlorotUniform", 1.0, "fan_avg", "uniform",
                        "Uniform in +-sqrt(6 / (fan_in + fan_out)).")
GlorotNormal = _preset("GlorotNormal", 1.0, "fan_avg", "truncated_normal",
                       "Truncated normal, stddev sqrt(2 / (fan_in + fan_out)).")
HeUniform = _preset("HeUniform", 2.0, "fan_in", "uniform", "Uniform in +-sqrt(6 / fan_in).")
HeNormal = _preset("HeNormal", 2.0, "fan_in", "truncated_normal",
                   "Truncated normal, stddev sqrt(2 / fan_in).")
LecunUniform = _preset("LecunUniform", 1.0, "fan_in", "uniform",
                       "Uniform in +-sqrt(3 / fan_in).")
LecunNormal = _preset("LecunNormal", 1.0, "fan_in", "truncated_normal",
                      "Truncated normal, stddev sqrt(1 / fan_in).")


class Orthogonal(Initializer):
    """An orthogonal matrix (rows: all axes but the last) times `gain`, Keras's QR rule."""

    def __init__(self, gain: float = 1.0, seed: int | None = None):
        super().__init__(seed)
        self.gain = float(gain)

    def draw(self, rng, shape):
        if len(shape) < 2:
            raise ValueError(f"Orthogonal needs a shape of at least 2 axes, got {shape}")
        rows, cols = int(np.prod(shape[:-1])), shape[-1]
        flat = rng.standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(flat)
        q = q * np.sign(np.diag(r))
        return self.gain * (q.T if rows < cols else q).reshape(shape)

    def get_config(self) -> dict:
        return {"gain": self.gain, "seed": self.seed}


INITIALIZERS = {cls.__name__: cls for cls in (
    Zeros, Ones, Constant, RandomUniform, RandomNormal, TruncatedNormal, VarianceScaling,
    GlorotUniform, GlorotNormal, HeUniform, HeNormal, LecunUniform, LecunNormal, Orthogonal)}
ALIASES = {"zeros": "Zeros", "ones": "Ones", "constant": "Constant", "uniform": "RandomUniform",
           "random_uniform": "RandomUniform", "normal": "RandomNormal",
           "random_normal": "RandomNormal", "truncated_normal": "TruncatedNormal",
           "variance_scaling": "VarianceScaling", "glorot_uniform": "GlorotUniform",
           "glorot_normal": "GlorotNormal", "he_uniform": "HeUniform", "he_normal": "HeNormal",
           "lecun_uniform": "LecunUniform", "lecun_normal": "LecunNormal",
           "orthogonal": "Orthogonal"}


def get(identifier):
    """An initializer from a name ('glorot_uniform'), a config dict, or a callable (as is)."""
    if isinstance(identifier, str):
        name = ALIASES.get(identifier, identifier)
        if name not in INITIALIZERS:
            raise ValueError(f"unknown initializer {identifier!r} (known: "
                             f"{', '.join(sorted(ALIASES))})")
        return INITIALIZERS[name]()
    if isinstance(identifier, dict):
        return INITIALIZERS[identifier["class_name"]].from_config(identifier.get("config", {}))
    if callable(identifier):
        return identifier
    raise ValueError(f"cannot make an initializer of {identifier!r}")


def serialize(initializer):
    """A name for a preset without a seed, else {'class_name', 'config'}; for get_config."""
    if isinstance(initializer, str):
        return initializer
    if not isinstance(initializer, Initializer):
        raise ValueError(f"cannot save initializer {initializer!r}: pass a name or an "
                         f"Initializer to make the layer serializable")
    config = initializer.get_config()
    for alias, name in ALIASES.items():
        if name == type(initializer).__name__ and config in ({}, {"seed": None}):
            return alias
    return {"class_name": type(initializer).__name__, "config": config}
