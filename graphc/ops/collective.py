"""Collective ops: values exchanged between the ranks of an MPI world (gc.distributed).

A compiled function runs its kernels up to a collective, hands the collective's buffers to
the host, which runs it through MPI (graphc/distributed/collectives.py), and continues: a
collective is a kernel boundary, never fused (kind "collective"; codegen/host.py). The
reference is the same host code, so the interpreter stays the oracle under mpirun; in a
single process every collective is the identity (one rank's result).

The gradients follow Horovod: allreduce's is the allreduce of the gradient (same op);
allgather's is the sum over ranks of this rank's block (reduce-scatter: allgather_grad);
broadcast's is the sum over ranks on the root and zero elsewhere (broadcast_grad). The two
gradient ops are collectives too, and differentiate back to allgather and broadcast.
"""
from __future__ import annotations

from graphc import dtypes
from graphc.builder import apply
from graphc.distributed.collectives import collective
from graphc.errors import DTypeError, ShapeError
from graphc.ir import TensorType
from graphc.ops.registry import OpDef, register

REDUCE_OPS = ("sum", "average")


def host_template(op: str) -> dict:
    """The code 'template' of a collective: the host function that runs it."""
    return {"opencl": f"host:graphc.{op}"}


def _allreduce_infer(types, reduce):
    (x,) = types
    if reduce not in REDUCE_OPS:
        raise ShapeError(f"reduce must be one of {REDUCE_OPS}, got {reduce!r}")
    if x.dtype == dtypes.bool_ or (reduce == "average" and not dtypes.is_float(x.dtype)):
        raise DTypeError(f"allreduce {reduce} of {x.dtype.name}: "
                         f"{'sum or average' if x.dtype == dtypes.bool_ else 'average'} "
                         f"needs {'numbers' if x.dtype == dtypes.bool_ else 'floats'}")
    return x


def _gather_infer(types, ranks):
    (x,) = types
    _check_ranks(ranks)
    if x.ndim == 0:
        raise ShapeError("allgather stacks along axis 0: give it an array of 1 or more dims")
    return TensorType((x.shape[0] * ranks,) + tuple(x.shape[1:]), x.dtype)


def _gather_grad_infer(types, ranks):
    (g,) = types
    _check_ranks(ranks)
    if g.ndim == 0 or g.shape[0] % ranks:
        raise ShapeError(f"allgather_grad splits axis 0 into {ranks} blocks: shape "
                         f"{g.shape} does not")
    if g.dtype == dtypes.bool_:
        raise DTypeError("allgather_grad adds: it needs numbers, got bool")
    return TensorType((g.shape[0] // ranks,) + tuple(g.shape[1:]), g.dtype)


def _broadcast_infer(types, root):
    (x,) = types
    if not isinstance(root, int) or root < 0:
        raise ShapeError(f"root must be a rank (an int >= 0), got {root!r}")
    return x


def _check_ranks(ranks) -> None:
    if not isinstance(ranks, int) or ranks < 1:
        raise ShapeError(f"ranks must be an int >= 1, got {ranks!r}")


def _allreduce_ref(x, reduce):
    return collective("allreduce", x, x.shape, reduce=reduce)


def _allgather_ref(x, ranks):
    return collective("allgather", x, (x.shape[0] * ranks,) + x.shape[1:], ranks=ranks)


def _allgather_grad_ref(g, ranks):
    return collective("allgather_grad", g, (g.shape[0] // ranks,) + g.shape[1:], ranks=ranks)


def _broadcast_ref(x, root):
    return collective("broadcast", x, x.shape, root=root)


def _broadcast_grad_ref(g, root):
    return collective("broadcast_grad", g, g.shape, root=root)


def _allreduce_vjp(g, y, x, reduce):
    return [apply("allreduce", [g], reduce=reduce)]


def _allgather_vjp(g, y, x, ranks):
    return [apply("allgather_grad", [g], ranks=ranks)]


def _allgather_grad_vjp(g, y, x, ranks):
    return [apply("allgather", [g], ranks=ranks)]


def _broadcast_vjp(g, y, x, root):
    return [apply("broadcast_grad", [g], root=root)]


def _broadcast_grad_vjp(g, y, x, root):
    return [apply("broadcast", [g], root=root)]


register(OpDef("allreduce", "collective", 1, ("reduce",), _allreduce_infer, _allreduce_ref,
               _allreduce_vjp, host_template("allreduce"),
               "The sum or the mean (reduce='sum' | 'average') of x over the ranks "
               "(MPI_Allreduce)."))
register(OpDef("allgather", "collective", 1, ("ranks",), _gather_infer, _allgather_ref,
               _allgather_vjp, host_template("allgather"),
               "Every rank's x stacked along axis 0, in rank order (MPI_Allgather)."))
register(OpDef("allgather_grad", "collective", 1, ("ranks",), _gather_grad_infer,
               _allgather_grad_ref, _allgather_grad_vjp, host_template("allgather_grad"),
               "This rank's block of the sum over ranks (MPI_Reduce_scatter_block): the "
               "gradient of allgather."))
register(OpDef("broadcast", "collective", 1, ("root",), _broadcast_infer, _broadcast_ref,
               _broadcast_vjp, host_template("broadcast"),
               "The root rank's x on every rank (MPI_Bcast)."))
register(OpDef("broadcast_grad", "collective", 1, ("root",), _broadcast_infer,
               _broadcast_grad_ref, _broadcast_grad_vjp, host_template("broadcast_grad"),
               "The sum over ranks on the root, zeros elsewhere (MPI_Reduce): the gradient "
               "of broadcast."))
