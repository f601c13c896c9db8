"""graphc's public names (`gc.*`): the package imports this module on first use of one.

graphc/__init__.py stays light so that `import graphc.runtime` (running an export) imports
no compiler module; the first `gc.<name>` imports this module, which binds every public
name in the order below, and the package serves them. Importing it also installs Tensor's
operators (graphc/tensor_methods.py) and Function's inspection and checking hooks
(graphc/inspection/debug.py).
"""
from graphc import tensor_methods  # noqa: F401  (installs Tensor's operators)
from graphc import builder
from graphc.autodiff import grad, hessian, jacobian
from graphc.builder import cast, constant, placeholder, variable
from graphc.dtypes import bool_, float16, float32, float64, int32, int64
from graphc.errors import (CheckpointError, CodegenError, CompileError, DeviceError,
                           DisconnectedError, DTypeError, FeedError, GraphcError, LaunchError,
                           NonDifferentiableError, NumericsError, ParseError, ShapeError,
                           IndexRangeError, TruthValueError, ValidationError, VerifyError)
from graphc.errors import ExportError
from graphc.function import Function, function
from graphc.runtime import Device, devices as runtime_devices
from graphc.gradcheck import gradcheck
from graphc.interp import interpret
from graphc.ir import Graph, Node, Tensor, TensorType
from graphc.math import (abs, add, clip, cos, divide, equal, erf, exp, greater, greater_equal,
                         less, less_equal, log, logical_and, logical_not, logical_or, maximum,
                         minimum, multiply, negative, not_equal, ones, ones_like, power, relu,
                         sigmoid, sign, sin, sqrt, square, subtract, tanh, where, zeros,
                         zeros_like)
from graphc.ops import REGISTRY, load_all
from graphc.ops.linalg import *        # noqa: F401,F403  matmul, conv2d
from graphc.ops.movement import *      # noqa: F401,F403  reshape, transpose, concatenate, ...
from graphc.ops.nn import *            # noqa: F401,F403  softmax, pools, one_hot
from graphc.ops.layer_norm import layer_norm  # noqa: F401
from graphc.ops.reduction import *     # noqa: F401,F403  sum, mean, max, min, argmax
from graphc import random              # noqa: E402  gc.random.uniform/normal/bernoulli
from graphc import losses              # noqa: E402  Keras-style losses
from graphc import nn, optim           # noqa: E402  Keras-style layers, models; optimizers
from graphc import data                # noqa: E402  gc.data: data sets, splits, augmentation
from graphc import distributed         # noqa: E402  gc.distributed: data-parallel on MPI
import graphc.inspection.debug  # noqa: F401,E402  (Function's inspection and checking hooks)
from graphc.inspection.dump import dump
from graphc.inspection.parser import parse
from graphc.inspection.printer import debugprint
from graphc.scan import scan
from graphc.substitute import clone
from graphc.inspection.report import report
from graphc.inspection.verify import verify

bool = bool_                            # noqa: A001  gc.bool, as np.bool


def devices():
    """Every OpenCL device of every platform."""
    return runtime_devices()
load_all()
