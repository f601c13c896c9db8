"""gc.distributed: a single process (rank 0 of 1), and under `mpirun -n 2` (skipped without
Open MPI's mpirun and mpi4py): training on two ranks equals one process training on the
global batch, collectives give what they must, and a failing rank stops the job in time.

The MPI checks run in one launch (tests/mpi_checks.py, each rank writing its results), the
faults in one launch each (tests/mpi_faults.py)."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import graphc as gc
import mpi_checks
from graphc.distributed import world as world_module
from graphc.distributed.devices import rank_device
from graphc.distributed.fingerprint import graph_fingerprint

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HAS_MPI = shutil.which("mpirun") is not None and importlib.util.find_spec("mpi4py") is not None
needs_mpi = pytest.mark.skipif(not HAS_MPI, reason="needs Open MPI's mpirun and mpi4py "
                                                   "(apt-get install openmpi-bin; pip install "
                                                   "graphc[distributed])")
MPI_TIMEOUT = 300       # seconds for one mpirun launch (it compiles a few functions per rank)


def mpirun(*args: str, ranks: int = 2, timeout: float = MPI_TIMEOUT, **env: str):
    """Run `python args...` on `ranks` ranks; the CompletedProcess and the seconds it took."""
    command = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-n", str(ranks),
               sys.executable, *args]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMI"))}
    # containers often forbid the cross-memory attach Open MPI's shared memory tries first
    settings = {"GRAPHC_COLLECTIVE_TIMEOUT": "60",
                "OMPI_MCA_btl_vader_single_copy_mechanism": "none"}
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                            env={**clean, **settings, **env})
    return result, time.monotonic() - started


# ---- one process ----

def test_without_mpi_the_world_is_one_process():
    assert gc.distributed.size() == 1 and gc.distributed.rank() == 0
    assert gc.distributed.local_rank() == 0 and gc.distributed.local_size() == 1
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(gc.distributed.allreduce(x), x)
    np.testing.assert_array_equal(gc.distributed.allgather(x), x)
    np.testing.assert_array_equal(gc.distributed.broadcast(x, 0), x)
    with pytest.raises(gc.distributed.DistributedError, match="root rank 1 is outside"):
        gc.distributed.broadcast(x, root_rank=1)


def test_launcher_variables_decide_whether_to_join_mpi(monkeypatch):
    for name in world_module.LAUNCHER_VARIABLES + ("GRAPHC_MPI",):
        monkeypatch.delenv(name, raising=False)
    assert not world_module.launched_by_mpi()
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    assert world_module.launched_by_mpi()
    monkeypatch.setenv("GRAPHC_MPI", "0")
    assert not world_module.launched_by_mpi()


def test_a_bad_timeout_is_named(monkeypatch):
    monkeypatch.setenv("GRAPHC_COLLECTIVE_TIMEOUT", "soon")
    with pytest.raises(gc.distributed.DistributedError, match="GRAPHC_COLLECTIVE_TIMEOUT"):
        world_module.World(None).timeout


def test_collective_ops_check_their_operands():
    with pytest.raises(gc.DTypeError, match="average needs floats"):
        gc.distributed.allreduce(gc.placeholder((3,), gc.int32))
    with pytest.raises(gc.ShapeError, match="reduce must be one of"):
        gc.distributed.allreduce(gc.placeholder((3,)), op="max")
    with pytest.raises(gc.ShapeError, match="allgather stacks along axis 0"):
        gc.distributed.allgather(gc.placeholder(()))


def test_a_graph_built_for_other_ranks_is_refused():
    from graphc.builder import apply
    x = gc.placeholder((2,), name="x")
    with pytest.raises(gc.distributed.DistributedError, match="built for 3 ranks.*has 1"):
        gc.interpret(apply("allgather", [x], ranks=3), {x: np.ones(2, np.float32)})


def test_distributed_optimizer_keeps_the_optimizer_it_wraps():
    adam = gc.optim.Adam(0.01, beta_1=0.8)
    wrapped = gc.distributed.DistributedOptimizer(adam)
    assert isinstance(wrapped, gc.optim.Adam) and type(wrapped).__name__ == "Adam"
    assert wrapped.get_config() == adam.get_config() and wrapped.iterations is adam.iterations
    assert gc.optim.serialize(wrapped) == gc.optim.serialize(adam)
    assert gc.distributed.DistributedOptimizer(wrapped) is wrapped
    w = gc.variable(np.ones(3, np.float32), name="w")
    updates = wrapped.updates(gc.sum(w * w), [w])
    graph = gc.Graph.from_outputs([u for _, u in updates])
    assert "allreduce" not in {n.op for n in graph.nodes}      # one rank: nothing to average
    with pytest.raises(ValueError, match="'average' or 'sum'"):
        gc.distributed.DistributedOptimizer(adam, op="max")


def test_broadcast_variables_in_one_process_keeps_the_values():
    v = gc.variable(np.arange(3, dtype=np.float32), name="v")
    gc.distributed.broadcast_variables([v])
    np.testing.assert_array_equal(v.get_value(), np.arange(3))
    with pytest.raises(gc.distributed.DistributedError, match="takes variables"):
        gc.distributed.broadcast_variables([gc.placeholder((2,))])


def test_each_rank_takes_the_local_rank_th_device_of_the_best_kind():
    def device(index, kind, platform="GPU vendor"):
        return SimpleNamespace(index=index, kind=kind, platform_name=platform, backend="opencl",
                               type="gpu" if "gpu" in kind else "cpu", unified_memory=False,
                               implementation_version=(), compute_units=1, global_mem_size=1)
    found = [device(0, "cpu", "Portable Computing Language"), device(1, "discrete gpu"),
             device(2, "integrated gpu"), device(3, "discrete gpu")]
    assert [rank_device(found, r).index for r in range(3)] == [1, 3, 1]
    assert rank_device(found[:1], 5).index == 0


def test_the_fingerprint_covers_structure_not_values_or_seeds():
    def graph(shape, value, seed):
        x = gc.placeholder(shape, name="x")
        noise = gc.random.uniform(shape, seed=seed)
        return gc.Graph.from_outputs([gc.distributed.allreduce(x * value + noise)])
    same = graph_fingerprint(graph((3,), 2.0, 1))
    assert graph_fingerprint(graph((3,), 5.0, 2)) == same
    assert graph_fingerprint(graph((4,), 2.0, 1)) != same


# ---- two ranks ----

@pytest.fixture(scope="module")
def ranks_ran(tmp_path_factory):
    """Every check of mpi_checks.py on two ranks, and the one-process reference."""
    if not HAS_MPI:
        pytest.skip("needs mpirun and mpi4py")
    out = tmp_path_factory.mktemp("mpi")
    result, _ = mpirun(str(HERE / "mpi_checks.py"), str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    mpi_checks.reference(out)
    return out


def _results(out: Path, check: str):
    return [dict(np.load(out / f"{check}.{rank}.npz")) for rank in (0, 1)], \
        (dict(np.load(out / f"{check}.reference.npz"))
         if (out / f"{check}.reference.npz").exists() else None)


def _same_across_ranks_and_as_one_process(out: Path, check: str) -> None:
    (rank0, rank1), reference = _results(out, check)
    assert rank0.keys() == rank1.keys() and set(reference) <= set(rank0)
    for key in reference:
        np.testing.assert_array_equal(rank0[key], rank1[key], err_msg=f"{check} {key}")
        np.testing.assert_allclose(rank0[key], reference[key], rtol=1e-5, atol=1e-5,
                                   err_msg=f"{check} {key}: two ranks vs one process")


@needs_mpi
def test_theano_style_step_on_two_ranks_equals_the_global_batch(ranks_ran):
    _same_across_ranks_and_as_one_process(ranks_ran, "theano")
    (rank0, _), _ = _results(ranks_ran, "theano")
    assert rank0["buckets"] == 1        # the four gradients and the loss: one collective,
    assert rank0["mpi_calls"] == mpi_checks.STEPS + 1   # one MPI call a step (+ graph check)


@needs_mpi
def test_keras_fit_on_two_ranks_equals_the_global_batch(ranks_ran):
    _same_across_ranks_and_as_one_process(ranks_ran, "keras")


@needs_mpi
def test_model_checkpoint_writes_on_rank_zero_only(ranks_ran):
    (rank0, rank1), _ = _results(ranks_ran, "checkpoint")
    saved = ranks_ran / "saved"
    assert sorted(p.name for p in saved.iterdir()) == \
        ["model-rank0-1.npz", "model-rank0-2.npz", "weights-rank0.npz"]
    final = [rank0[f"w{i}"] for i in range(2)]
    for i, weight in enumerate(final):
        np.testing.assert_array_equal(rank1[f"w{i}"], weight)
    model = gc.nn.load_model(saved / "model-rank0-2.npz")
    for got, weight in zip(model.get_weights(), final):
        np.testing.assert_array_equal(got, weight)
    model.load_weights(saved / "model-rank0-1.npz")        # epoch 1: before the last one
    assert not np.array_equal(model.get_weights()[0], final[0])
    model.load_weights(saved / "weights-rank0.npz")
    for got, weight in zip(model.get_weights(), final):
        np.testing.assert_array_equal(got, weight)


@needs_mpi
def test_local_rank_and_size_on_one_host(ranks_ran):
    ranks, _ = _results(ranks_ran, "checkpoint")
    assert str(ranks[0]["host"]) == str(ranks[1]["host"])
    for r, got in enumerate(ranks):
        assert (int(got["local_rank"]), int(got["local_size"])) == (r, 2), f"rank {r}"
        if int(got["launcher_local_size"]) != -1:      # what Open MPI's launcher said
            assert (int(got["launcher_local_rank"]), int(got["launcher_local_size"])) == \
                (r, 2)


@needs_mpi
def test_broadcast_variables_makes_differently_made_ranks_equal(ranks_ran):
    (rank0, rank1), _ = _results(ranks_ran, "broadcast_variables")
    assert not np.array_equal(rank0["before"], rank1["before"])
    for key in ("a", "b"):
        np.testing.assert_array_equal(rank0[key], rank1[key])
    np.testing.assert_array_equal(rank0["a"], np.ones((3, 2)))       # rank 1's values
    np.testing.assert_array_equal(rank0["b"], np.arange(4) * 2)


@needs_mpi
def test_collectives_on_two_ranks(ranks_ran):
    ranks, _ = _results(ranks_ran, "collectives")
    values = [np.arange(6, dtype=np.float32).reshape(2, 3) + 10 * r for r in (0, 1)]
    weights = np.arange(12, dtype=np.float32).reshape(4, 3)
    for r, got in enumerate(ranks):
        assert got["size"] == 2 and got["rank"] == r
        expected = [values[0] + values[1], values[0] + values[1],
                    np.concatenate(values), values[1] + 1,
                    2 * weights[2 * r:2 * r + 2],             # allgather's gradient
                    4 * (values[1] + 1) if r == 1 else np.zeros((2, 3))]   # broadcast's
        for i, want in enumerate(expected):
            np.testing.assert_allclose(got[f"got{i}"], want, err_msg=f"rank {r} output {i}")
            np.testing.assert_allclose(got[f"interpreted{i}"], want, err_msg=f"rank {r} {i}")
        np.testing.assert_array_equal(got["eager_sum"], [3.0])
        np.testing.assert_array_equal(got["eager_gather"], [0, 1])


@needs_mpi
def test_ranks_that_built_different_graphs_are_named(ranks_ran):
    (rank0, rank1), _ = _results(ranks_ran, "different_graphs")
    for message in (str(rank0["message"]), str(rank1["message"])):
        assert "the ranks built different graphs" in message
        assert "rank 0: graph" in message and "rank 1: graph" in message
        assert "allreduce f32[4]" in message and "allreduce f32[5]" in message
        assert "function 'mismatched'" in message


@needs_mpi
@pytest.mark.parametrize("mode,says", [
    ("raise", "rank 1 of 2 stopped on RuntimeError; aborting every rank"),
    ("die", "exited on signal 9"),
    ("hang", "did not complete within 5 s"),
])
def test_a_failing_rank_stops_every_rank_in_bounded_time(mode, says):
    result, seconds = mpirun(str(HERE / "mpi_faults.py"), mode, timeout=120,
                             GRAPHC_COLLECTIVE_TIMEOUT="5")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert says in output, output[-3000:]
    assert "rank 0: finished" not in output and "rank 0: step 99" not in output
    assert seconds < 90, f"the job took {seconds:.0f} s to stop"


@needs_mpi
def test_graphc_train_distributed_prints_on_rank_zero_only(tmp_path):
    result, _ = mpirun("-m", "graphc", "train", "linreg", "--distributed", "--epochs", "2",
                       "--limit", "256", "--plots", "none", "--quiet")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    finals = [line for line in result.stdout.splitlines() if line.startswith("linreg:")]
    assert len(finals) == 1, result.stdout
