"""Linear regression: one Dense unit fit by SGD with momentum to a synthetic linear target.

The target of each image is t = x . w + b + noise, with w, b and the noise drawn from --seed
(noise std 0.1, so the best possible test MSE is about 0.01); the report compares the
trained model's MSE with that floor and with numpy's least-squares solution.

    graphc train linreg --epochs 30
"""
from __future__ import annotations

import argparse

import numpy as np

from graphc import nn, optim
from graphc.models import common

DEFAULTS = {"epochs": 30, "batch_size": 32, "lr": None}    # lr None: stable_lr(x_train)
NOISE_STD = 0.1


def synthetic_target(x: np.ndarray, seed: int = 0, noise_std: float = NOISE_STD) -> np.ndarray:
    """x . w + b + noise for each row of x (flattened), float32 of shape (N,)."""
    rng = np.random.default_rng(seed)
    flat = x.reshape(len(x), -1)
    w = rng.standard_normal(flat.shape[1]) / np.sqrt(flat.shape[1])
    b = rng.standard_normal()
    return (flat @ w + b + noise_std * rng.standard_normal(len(x))).astype(np.float32)


def stable_lr(x: np.ndarray, scale: float = 0.25) -> float:
    """A learning rate SGD with momentum 0.9 converges with: scale / mean squared input norm.

    The loss's curvature is at most about E|x|^2, so this keeps each step well inside the
    stable range whatever the number of features (0.02 on the 8x8 digits).
    """
    flat = x.reshape(len(x), -1).astype(np.float64)
    return float(scale / np.mean(np.sum(flat ** 2, axis=1) + 1.0))


def build(input_shape, num_classes: int = 1, seed: int = 0, *, lr: float | None = None,
          device=None) -> nn.Model:
    """Flatten and one linear Dense unit (num_classes outputs); MSE loss, SGD(momentum 0.9)."""
    common.set_seed(seed)
    model = nn.Sequential([nn.Input(tuple(input_shape)), nn.Flatten(),
                           nn.Dense(num_classes)], name="linreg")
    model.compile(optim.SGD(lr or 0.02, momentum=0.9), "mse", ["mae"],
                  device=device)
    return model


def least_squares_mse(x_train, t_train, x_test, t_test) -> float:
    """Test MSE of numpy's least-squares fit (with an intercept): the best a linear model does."""
    def design(x):
        return np.hstack([x.reshape(len(x), -1), np.ones((len(x), 1))]).astype(np.float64)
    coef, *_ = np.linalg.lstsq(design(x_train), t_train, rcond=None)
    return float(np.mean((design(x_test) @ coef - t_test) ** 2))


def train(args: argparse.Namespace) -> dict:
    """Fit the synthetic target, report test MSE against the noise floor and least squares."""
    split = common.load_split(args, flat=True)
    t_train = synthetic_target(split.x_train, args.seed)
    t_test = synthetic_target(split.x_test, args.seed)
    lr = args.lr or stable_lr(split.x_train)
    model = build(split.x_train.shape[1:], 1, args.seed, lr=lr, device=args.device)
    if args.verbose:
        print(f"linreg on {args.dataset}: {common.describe_split(split)}; SGD lr {lr:.3g}")
    history, timings = common.fit(model, split.x_train, t_train, args,
                                  validation_data=(split.x_test, t_test))
    predicted = model.predict(split.x_test, batch_size=args.batch_size).reshape(-1)
    metrics = {"test_mse": float(np.mean((predicted - t_test) ** 2)),
               "noise_floor_mse": NOISE_STD ** 2,
               "least_squares_mse": least_squares_mse(split.x_train, t_train,
                                                      split.x_test, t_test),
               "target_variance": float(np.var(t_test)), **timings}
    common.print_metrics("linreg", metrics)
    common.save_curves(history, common.plot_path(args, "linreg_curves.png"),
                       f"linreg on {args.dataset}")
    save_scatter(t_test, predicted, common.plot_path(args, "linreg_predictions.png"))
    return {**metrics, "history": history, "model": model}


def save_scatter(target: np.ndarray, predicted: np.ndarray, path) -> None:
    """Predicted against true targets of the test set."""
    plt = common.pyplot() if path else None
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(target, predicted, s=6, alpha=0.5)
    low, high = float(min(target.min(), predicted.min())), float(max(target.max(),
                                                                      predicted.max()))
    ax.plot([low, high], [low, high], color="black", linewidth=1)
    ax.set_xlabel("target")
    ax.set_ylabel("prediction")
    ax.set_title("linreg: test set")
    common.save_figure(plt, fig, path)


main = common.make_main(__doc__, DEFAULTS, train)

if __name__ == "__main__":
    raise SystemExit(main())
