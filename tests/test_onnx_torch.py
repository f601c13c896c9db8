"""Models exported from torch run in graphc on the device and match torch; an imported model
differentiates like any graphc graph: its gradients match torch's and training lowers its
loss. Skipped without onnx, torch or an OpenCL device."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx")
torch = pytest.importorskip("torch")

import graphc as gc  # noqa: E402
import graphc.onnx  # noqa: E402
import onnx_models  # noqa: E402

pytestmark = pytest.mark.opencl
RTOL = 1e-3

MODELS = {   # name: (builder, input shape for batch 4)
    "cnn": (onnx_models.cnn, (4, 3, 12, 12)),
    "recurrent": (onnx_models.recurrent, (4, 5, 8)),
    "encoder": (onnx_models.encoder, (4, 6, 32)),
}


def _made(name: str, seed: int = 0):
    torch.manual_seed(seed)
    build, shape = MODELS[name]
    module = build()
    for buffer_name, buffer in module.named_buffers():      # non-trivial BatchNorm statistics
        if buffer_name.endswith("running_mean"):
            buffer.uniform_(-0.5, 0.5)
        elif buffer_name.endswith("running_var"):
            buffer.uniform_(0.5, 2.0)
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return module, onnx_models.export(module, x), x


def _close(got, want, rtol=RTOL):
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * float(np.abs(want).max()))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_exported_model_matches_torch_on_the_device(name, cl_device):
    module, proto, x = _made(name)
    model = graphc.onnx.load(proto, device=cl_device)          # batch is symbolic: bound below
    (y,) = model(x)
    _close(y, onnx_models.torch_forward(module, x))


def test_a_new_batch_size_respecializes_and_still_matches(cl_device):
    module, proto, x = _made("cnn")
    model = graphc.onnx.load(proto, device=cl_device)
    first = model(x)[0]
    small = x[:2].copy()
    (second,) = model(small)
    assert model.inputs[0].shape == small.shape
    _close(second, onnx_models.torch_forward(module, small))
    _close(model(x)[0], first)                                # the first specialization is cached
    assert len(model.specializations) == 2


def test_the_cnn_imports_batchnorm_and_grouped_dilated_convolutions():
    _, proto, x = _made("cnn")
    model = graphc.onnx.load(proto, input_shapes={"x": x.shape})
    ops = {n.op for n in gc.Graph.from_outputs(model.outputs).nodes}
    assert "conv2d" in ops and "maximum" in ops          # a 2x2 max pool: strided slices
    groups = [n.attrs["groups"] for n in gc.Graph.from_outputs(model.outputs).nodes
              if n.op == "conv2d"]
    assert 4 in groups
    assert {"1.running_mean", "4.running_var"} <= set(model.variables)


def _torch_gradients(module, x, target):
    module.zero_grad()
    loss = ((module(torch.from_numpy(x)) - torch.from_numpy(target)) ** 2).mean()
    loss.backward()
    return float(loss.detach()), {n: p.grad.numpy().copy() for n, p in module.named_parameters()}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "recurrent"
                                  else n for n in sorted(MODELS)])     # ~50 s to compile
def test_gradients_of_an_imported_model_match_torch(name, cl_device):
    module, proto, x = _made(name)
    model = graphc.onnx.load(proto, input_shapes={"x": x.shape}, device=cl_device)
    (out,) = model.outputs
    target = np.random.default_rng(1).standard_normal(out.shape).astype(np.float32)
    t = gc.placeholder(out.shape, gc.float32, name="target")
    loss = gc.mean(gc.square(out - t))
    names = [n for n, _ in module.named_parameters()]
    grads = gc.grad(loss, [model.variables[n] for n in names])
    step = gc.function(model.inputs + [t], [loss] + grads, device=cl_device)
    got_loss, *got = step(x, target)
    want_loss, want = _torch_gradients(module, x, target)
    assert abs(float(got_loss) - want_loss) <= RTOL * abs(want_loss)
    for n, g in zip(names, got):
        _close(g, want[n], rtol=2e-3)


def test_fine_tuning_an_imported_model_lowers_its_loss(cl_device):
    module, proto, x = _made("encoder")
    model = graphc.onnx.load(proto, input_shapes={"x": x.shape}, device=cl_device)
    (out,) = model.outputs
    target = np.random.default_rng(2).standard_normal(out.shape).astype(np.float32)
    t = gc.placeholder(out.shape, gc.float32, name="target")
    loss = gc.mean(gc.square(out - t))
    params = list(model.variables.values())
    step = gc.function(model.inputs + [t], [loss],
                       updates=gc.optim.Adam(0.01).updates(loss, params), device=cl_device)
    losses = [float(step(x, target)[0]) for _ in range(8)]
    assert losses[-1] < 0.8 * losses[0], losses
    (after,) = model(x)                       # the model's own calls see the trained weights
    assert np.abs(after - onnx_models.torch_forward(module, x)).max() > 1e-3
