"""gc.optim: Keras's optimizers as graph updates, and learning-rate schedules.

    opt = gc.optim.Adam(1e-3, global_clipnorm=1.0)
    step = gc.function([x, y], loss, updates=opt.updates(loss, params))
"""
from graphc.optim import schedules
from graphc.optim.base import Optimizer, clip_by_global_norm, clip_by_norm
from graphc.optim.adam_family import Adamax, Lion, Nadam
from graphc.optim.loss_scale import LossScaleOptimizer
from graphc.optim.optimizers import (SGD, Adagrad, Adam, AdamW, RMSprop, deserialize, get,
                                     serialize)
from graphc.optim.schedules import (CosineDecay, ExponentialDecay, InverseTimeDecay,
                                    LearningRateSchedule, PiecewiseConstant)

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "Nadam", "Adamax",
           "Lion", "LossScaleOptimizer", "get", "serialize",
           "deserialize", "schedules", "LearningRateSchedule", "ExponentialDecay",
           "InverseTimeDecay", "PiecewiseConstant", "CosineDecay", "clip_by_norm",
           "clip_by_global_norm"]
