"""gc.nn: Keras-like layers, models, training."""
from graphc.nn.base import Layer, register_layer
from graphc.nn import activations, callbacks, initializers, losses, metrics  # noqa: F401
from graphc.nn import constraints, mixed_precision, regularizers  # noqa: F401
from graphc.nn.callbacks import (Callback, CSVLogger, EarlyStopping, History,  # noqa: F401
                                 LambdaCallback, LearningRateScheduler, ModelCheckpoint,
                                 ReduceLROnPlateau, TensorBoard, TerminateOnNaN)
from graphc.nn.core import (Activation, Add, Concatenate, Dense, Dropout, Flatten,  # noqa: F401
                            Reshape)
from graphc.nn.conv import (Conv1D, Conv2D, Conv2DTranspose, Convolution1D,  # noqa: F401
                            Convolution2D, Convolution2DTranspose)
from graphc.nn.depthwise import (DepthwiseConv2D, SeparableConv2D,  # noqa: F401
                                 SeparableConvolution2D)
from graphc.nn.pooling import (AveragePooling1D, AveragePooling2D, AvgPool1D,  # noqa: F401
                               AvgPool2D, GlobalAveragePooling1D, GlobalAveragePooling2D,
                               GlobalAvgPool1D, GlobalAvgPool2D, GlobalMaxPool1D,
                               GlobalMaxPool2D, GlobalMaxPooling1D, GlobalMaxPooling2D,
                               MaxPool1D, MaxPool2D, MaxPooling1D, MaxPooling2D, UpSampling2D,
                               ZeroPadding2D)
from graphc.nn.embedding import Embedding, PositionEmbedding  # noqa: F401
from graphc.nn.layout import ChannelsLastWarning  # noqa: F401
from graphc.nn.attention import MultiHeadAttention  # noqa: F401
from graphc.nn.wrappers import Bidirectional, TimeDistributed  # noqa: F401
from graphc.nn.activation_layers import ELU, LeakyReLU, ReLU, Softmax  # noqa: F401
from graphc.nn.merging import Average, Maximum, Minimum, Multiply, Subtract  # noqa: F401
from graphc.nn.reshaping import Lambda, Permute, RepeatVector, register_function  # noqa: F401
from graphc.nn.normalization import BatchNormalization, LayerNormalization  # noqa: F401
from graphc.nn.recurrent import GRU, LSTM, SimpleRNN  # noqa: F401
from graphc.nn.functional import Input, KerasTensor  # noqa: F401
from graphc.nn.model import Model, Sequential  # noqa: F401
from graphc.nn.saving import CheckpointError, load_model, save_model  # noqa: F401
from graphc.nn.model_json import model_from_json  # noqa: F401

load = load_model                     # DESIGN.md's gc.nn save/load
