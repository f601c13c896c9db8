"""Small torch models exported to ONNX, shared by the ONNX tests and bench/onnx.py.

Each is exported with torch's TorchScript exporter (dynamo=False: it needs no onnxscript),
in eval mode, without constant folding so the initializers keep torch's parameter names
(BatchNormalization stays a node instead of being folded into the convolution), and with
a symbolic batch dimension.
"""
from __future__ import annotations

import io
import warnings

import numpy as np


def _torch():
    import torch
    return torch


def cnn():
    """Conv + BatchNorm + ReLU, a grouped dilated conv, max and global average pools."""
    nn = _torch().nn
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=2, dilation=2, groups=4), nn.BatchNorm2d(32), nn.ReLU(),
        nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))


def mlp():
    nn = _torch().nn
    return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                         nn.Linear(512, 10))


def lenet():
    nn = _torch().nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))


def recurrent(inputs: int = 8, hidden: int = 16):
    """An LSTM, then a bidirectional GRU, then a linear layer on the last step."""
    nn = _torch().nn

    class Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(inputs, hidden, batch_first=True)
            self.gru = nn.GRU(hidden, 12, batch_first=True, bidirectional=True)
            self.fc = nn.Linear(24, 5)

        def forward(self, x):
            h, _ = self.lstm(x)
            h, _ = self.gru(h)
            return self.fc(h[:, -1])

    return Recurrent()


def lstm(inputs: int = 28, hidden: int = 128):
    """bench's LSTM: one layer, a linear layer on the last step."""
    nn = _torch().nn

    class Lstm(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(inputs, hidden, batch_first=True)
            self.fc = nn.Linear(hidden, 10)

        def forward(self, x):
            h, _ = self.lstm(x)
            return self.fc(h[:, -1])

    return Lstm()


def encoder(d_model: int = 32, heads: int = 4, feedforward: int = 64):
    """A transformer encoder layer with GELU (is_causal passed explicitly: the TorchScript
    exporter cannot trace the layer's own causal-mask detection)."""
    nn = _torch().nn

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.TransformerEncoderLayer(d_model, heads, feedforward, dropout=0.0,
                                                    activation="gelu", batch_first=True)

        def forward(self, x):
            return self.layer(x, src_mask=None, is_causal=False)

    return Encoder()


def export(module, example: np.ndarray, opset: int = 17) -> bytes:
    """The module (put in eval mode) as ONNX bytes, its batch dimension symbolic."""
    torch = _torch()
    module.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.from_numpy(example),), buffer, dynamo=False,
                          opset_version=opset, do_constant_folding=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}})
    return buffer.getvalue()


def torch_forward(module, x: np.ndarray) -> np.ndarray:
    torch = _torch()
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()
