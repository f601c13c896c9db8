"""gc.nn: Keras-like layers, models, training."""
from graphc.nn.base import Layer, register_layer
from graphc.nn import activations, callbacks, initializers, losses, metrics  # noqa: F401
from graphc.nn import constraints, mixed_precision, regularizers  # noqa: F401
from graphc.nn.callbacks import (Callback, CSVLogger, EarlyStopping, History,  # noqa: F401
                                 LambdaCallback, LearningRateScheduler, ModelCheckpoint,
                                 ReduceLROnPlateau, TensorBoard, TerminateOnNaN)
from graphc.nn.core import (Activation, Add, Concatenate, Dense, Dropout, Flatten,  # noqa: F401
                            Reshape)
from graphc.nn.conv import AvgPool2D, Conv2D, MaxPool2D  # noqa: F401
from graphc.nn.embedding import Embedding  # noqa: F401
from graphc.nn.normalization import BatchNormalization  # noqa: F401
from graphc.nn.recurrent import GRU, LSTM, SimpleRNN  # noqa: F401
from graphc.nn.functional import Input, KerasTensor  # noqa: F401
from graphc.nn.model import Model, Sequential  # noqa: F401
from graphc.nn.saving import CheckpointError, load_model, save_model  # noqa: F401
from graphc.nn.model_json import model_from_json  # noqa: F401

load = load_model                     # DESIGN.md's gc.nn save/load
