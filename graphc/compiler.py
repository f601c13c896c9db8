"""Compile a graph (outputs plus variable updates) into a runtime Plan.

graph passes -> fusion -> schedule -> memory plan -> codegen (kernel data) -> the backend's
renderer (source, last) -> Plan. Fusion hands code generation plain KernelGroups
(codegen/kernel_groups.py), code generation hands the renderer BuiltKernels
(codegen/built.py), the renderer hands back named kernels and one program. Variables and
constants live in device-resident arrays shared by every function that uses them; an
update is written into its variable's buffer by the kernel that computes it when that
kernel reads the variable only at the index it writes, else through a final copy.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import networkx as nx

from graphc import config
from graphc.builder import apply
from graphc.codegen.build import build_kernels
from graphc.codegen.built import STEP_BUFFER, BuiltBundle, RenderedKernel
from graphc.codegen.capabilities import check_device_dtypes
from graphc.codegen.fallbacks import decompose
from graphc.codegen.gemm import DeviceInfo, device_info_from
from graphc.codegen.glsl_gemm import VULKAN
from graphc.codegen.host import HostStep, collectives_early, host_calls, host_leaves
from graphc.codegen.kernel_groups import KernelGroup
from graphc.codegen.program import render_program
from graphc.codegen.renderer import capabilities, renderer_for
from graphc.device_limits import check_kernels, check_memory_plan
from graphc.distributed.fingerprint import graph_fingerprint
from graphc.errors import FeedError, ShapeError
from graphc.ir import Graph, Tensor, is_among
from graphc.ops.registry import get_op
from graphc.passes.fuse import Group, cone, dependency_graph, make_groups, reads_of
from graphc.passes.pipeline import optimize
from graphc.passes.horizontal import Bundle, bundle_steps
from graphc.passes.kernel_size import buffer_limit
from graphc.passes.schedule import MemoryPlan, kernel_dag, plan_memory, schedule
from graphc.runtime import BufferArg, BufferSpec, IOBinding, KernelLaunch, Plan, ScalarArg
from graphc.sites import site_of

GPU_GROUP = 64
# PoCL runs a CPU work-group's items as one vectorized loop; an explicit group of 8 beat
# letting the driver choose (kernel time: MLP step 3.2 -> 2.5 ms, LeNet 34 -> 24.5 ms).
CPU_ITEMS_PER_WORK_ITEM = 16    # a float vector of AVX-512; more measured no faster
CPU_GROUP = 8
VULKAN_GROUP = 64
VULKAN_ITEMS_PER_WORK_ITEM = 16     # lavapipe (a CPU): see _items_per_work_item


@dataclass
class Compiled:
    """Everything a Function needs to run and to explain itself."""

    plan: Plan
    kernels: tuple[RenderedKernel, ...]         # in launch order
    memory: MemoryPlan
    graph: Graph
    pass_records: list
    leaves: dict                    # plan buffer -> variable or constant tensor
    host_values: list = field(default_factory=list)  # the value each host call writes


def compile_graph(inputs, outputs, updates, device, name: str = "function") -> Compiled:
    """Optimize, fuse, schedule and generate code for `outputs` and `updates`."""
    n_out = len(outputs)
    targets = [v for v, _ in updates]
    graph = Graph.from_outputs(list(outputs) + [u for _, u in updates],
                               inputs=list(inputs) + targets)   # targets: even if unread
    _check_inputs(graph, inputs)
    on_pass = _print_pass if config.debug_level() >= 3 else None
    graph, records = optimize(graph, on_pass=on_pass)
    if not capabilities(device).templates:      # Vulkan: template ops as primitive ops
        decomposed = decompose(graph, _buffer_limit(device))
        if decomposed is not graph:
            graph, more = optimize(decomposed, on_pass=on_pass)
            records = records + more
    check_device_dtypes(graph, device)      # before any kernel is generated or built
    values = [_materializable(v) for v in graph.outputs]
    if any(v is not o for v, o in zip(values, graph.outputs)):    # copies of leaves added
        graph = Graph.from_outputs(values, inputs=graph.inputs, name=graph.name)
    outs, new_values = values[:n_out], values[n_out:]
    leaf_names = _leaf_names(graph)
    with buffer_limit(_buffer_limit(device)):
        groups, buffer_of, in_place = _fuse(graph, outs, targets, new_values, leaf_names)
    stored = {t for g in groups for t in g.stores} | set(buffer_of)
    dag = kernel_dag(groups, in_place, stored)
    order = schedule(collectives_early(groups, dag), dag)
    steps = bundle_steps(order, dag)
    scratch = {t for g in groups for t in g.stores} - set(buffer_of)
    memory = plan_memory(steps, scratch, stored, buffer_of)
    read_by_host = host_leaves(groups)
    leaf_map = {leaf: leaf_names[leaf] for leaf in graph.inputs
                if not (leaf.role == "constant" and leaf.size == 1) or leaf in read_by_host}
    held = check_memory_plan(device, inputs, memory, leaf_map)   # before generating code
    hosts: list[HostStep] = []
    built = _build_kernels(steps, {**memory.buffer_of, **leaf_map}, device, hosts)
    program = render_program(built, renderer_for(device), _work_group(device))   # text, last
    kernels = program.kernels
    plan, leaves = _plan(graph, inputs, outs, program, memory, leaf_map, device,
                         {leaf_map[leaf] for leaf in read_by_host})
    if hosts:
        hosts = [HostStep(h.group, program.launches_before(h.position)) for h in hosts]
        plan = _with_host_calls(plan, hosts, {**memory.buffer_of, **leaf_map}, name, graph)
    check_kernels(device, plan, kernels, held)                   # before building it
    return Compiled(plan, kernels, memory, graph, records, leaves,
                    [h.group.root for h in hosts])


def _check_inputs(graph: Graph, inputs) -> None:
    missing = [p for p in graph.placeholders if p not in set(inputs)]
    if missing:
        p = missing[0]
        raise FeedError(f"the outputs depend on placeholder {p.name!r} ({p.type}, created at "
                        f"{p.site}), which is not among the function's inputs")


def _materializable(t: Tensor) -> Tensor:
    """A value a kernel computes: leaves are copied by an identity reshape."""
    if t.producer is not None:
        return t
    with site_of(t.site):
        return apply("reshape", [t], shape=t.shape)


def _print_pass(name: str, graph: Graph) -> None:
    print(f"--- IR after {name} ---\n{graph}")


def _fuse(graph: Graph, outs, targets, new_values, leaf_names):
    """Groups, the buffers fixed in advance, and which group writes each variable."""
    buffer_of = {t: f"out{i}" for i, t in enumerate(outs)}
    writes, copied = {}, []
    for variable, value in zip(targets, new_values):
        if is_among(variable, writes.values()) or is_among(variable, (v for _, v in copied)):
            raise ShapeError(f"variable {variable.name!r} is updated twice in one function")
        if value in writes:
            copied.append((value, variable))      # one value, several variables: copies
        else:
            writes[value] = variable
    extended = list(outs) + list(writes)
    groups = make_groups(_with(graph, extended), extended)
    stored = {t for g in groups for t in g.stores}
    writer = {t: g for g in groups for t in g.stores}
    dag = dependency_graph(groups)
    reads = {id(g): reads_of(g, stored) for g in groups}
    in_place = {}
    for value, variable in writes.items():
        if value not in buffer_of and _in_place_ok(variable, writer[value], groups, stored, dag,
                                                   reads):
            buffer_of[value] = leaf_names[variable]
            in_place[variable] = writer[value]
            for reader in _readers(variable, writer[value], groups, reads):
                dag.add_edge(id(reader), id(writer[value]))    # the old value is read first
    for value, variable in list(writes.items()) + copied:
        if variable not in in_place:
            copy = _materializable_copy(value)
            groups.append(Group("elementwise", copy, stores=[copy]))
            buffer_of[copy] = leaf_names[variable]
            in_place[variable] = groups[-1]
    return groups, buffer_of, in_place


def _in_place_ok(variable: Tensor, group: Group, groups, stored: set, dag, reads) -> bool:
    """Can `group` overwrite `variable`'s buffer while it runs? Only if every read of the
    variable in it is at the very element its own work item writes (an elementwise value of
    the variable's shape, in a kernel over the same number of elements: a GEMM epilogue
    through reshapes stores each value at the position of its own element), and no kernel
    that needs the old value has to wait for this one. A collective never does: its result
    is written back while later kernels may still read the old value."""
    if group.kind == "host":
        return False
    body = set(cone(group.root, stored)) if group.kind != "elementwise" else set()
    for t in [group.root] + group.stores:
        for value in cone(t, stored):
            node = value.producer
            if node is None or not is_among(variable, node.inputs):
                continue
            if value in body or get_op(node.op).kind != "elementwise" \
                    or value.shape != variable.shape or variable.size != group.root.size:
                return False
    readers = _readers(variable, group, groups, reads)
    return not any(nx.has_path(dag, id(group), id(r)) for r in readers)


def _readers(variable: Tensor, group: Group, groups, reads: dict) -> list[Group]:
    return [g for g in groups if g is not group and variable in reads[id(g)]]


def _with(graph: Graph, outputs) -> Graph:
    return Graph(graph.inputs, graph.nodes, tuple(outputs), graph.name)


def _materializable_copy(value: Tensor) -> Tensor:
    with site_of(value.site or (value.producer.site if value.producer else "")):
        return apply("reshape", [value], shape=value.shape)


def _build_kernels(steps, buffer_of, device, hosts: list) -> list:
    """The kernels of each scheduled step, as data: a list of BuiltKernels per group, a
    BuiltBundle per horizontal bundle (aliases launch nothing). Each collective's step joins
    `hosts` with the number of built steps before it. On a Vulkan device matrix products
    take the GLSL GEMM (codegen/glsl_gemm.py), convolutions the loop kernels."""
    info = DeviceInfo(VULKAN) if _is_vulkan(device) else device_info_from(device)
    nbytes = {}
    for t, b in buffer_of.items():
        nbytes[b] = max(nbytes.get(b, 0), t.type.nbytes)
    tuner = None if _is_vulkan(device) else _tuner(device)
    templates = getattr(renderer_for(device), "raw_templates", frozenset())
    built = []
    for i, step in enumerate(steps):
        if isinstance(step, Bundle):
            built.append(BuiltBundle(tuple(
                tuple(build_kernels(_kernel_group(g), buffer_of, nbytes, info, tuner,
                                    f"partial{i}_{j}", templates=templates))
                for j, g in enumerate(step.members))))
        elif step.kind == "host":
            hosts.append(HostStep(step, len(built)))
        elif step.kind != "alias":
            built.append(build_kernels(_kernel_group(step), buffer_of, nbytes, info, tuner,
                                       f"partial{i}", _items_per_work_item(device),
                                       templates))
    return built


def _kernel_group(group: Group) -> KernelGroup:
    """Fusion's group as the plain data code generation takes."""
    return KernelGroup(group.kind, group.root, tuple(group.stores))


def _items_per_work_item(device) -> int:
    """Elements per work item of a (not bundled) elementwise kernel: a loop the CPU compiler
    vectorizes (codegen/opencl.py items_loop); one on GPUs. On a CPU Vulkan device
    (lavapipe) a work item takes VULKAN_ITEMS_PER_WORK_ITEM elements too: each of its
    loads costs a per-lane access, so a reduction's lanes reuse what they load (a matrix
    product's loop kernel: 1.20 -> 0.90 s for 128x784 @ 784x512)."""
    if _is_vulkan(device):
        return VULKAN_ITEMS_PER_WORK_ITEM if device.type == "cpu" else 1
    return 1 if device.type == "gpu" else CPU_ITEMS_PER_WORK_ITEM


def _work_group(device) -> int:
    """Work items per group of the kernels that do not choose their own geometry."""
    if _is_vulkan(device):
        return min(VULKAN_GROUP, device.max_work_group_size)
    return min(GPU_GROUP if device.type == "gpu" else CPU_GROUP, device.max_work_group_size)


def _buffer_limit(device) -> int | None:
    """A Vulkan device's storage buffers per shader, less the step counter's binding (fusion
    keeps every kernel within it: passes/kernel_size.py); None on OpenCL."""
    if not _is_vulkan(device):
        return None
    return max(2, int(device.max_storage_buffers) - 1)


def _is_vulkan(device) -> bool:
    return getattr(device, "backend", "opencl") == "vulkan"


def _tuner(device):
    """GEMM tiles: the tuned choice cached for this device, tuning now if GRAPHC_TUNE=1."""
    from dataclasses import replace

    from graphc.tune import cached_tuning, spec_key, tune_gemm
    choices: dict = {}      # one look-up per GEMM shape, not one file read per matmul

    def choose(spec):
        choice = cached_tuning(device, spec)
        if choice is None and config.flag("GRAPHC_TUNE"):
            best = tune_gemm(device, spec)[0]
            choice = best.tuning if best.rejected is None else None
        return choice

    def tuned(spec, info):
        key = spec_key(spec)
        if key not in choices:
            choices[key] = choose(spec)
        return replace(info, tuning=choices[key]) if choices[key] else info
    return tuned


def _plan(graph, inputs, outs, program, memory, leaf_map, device,
          read_by_host=frozenset()) -> tuple[Plan, dict]:
    kernels = program.kernels
    buffers, leaves = {}, {}
    input_bindings = []
    for p in inputs:
        name = leaf_map.get(p) or _unique_input_name(p, buffers)
        buffers[name] = BufferSpec(name, max(p.type.nbytes, 1), "input")
        input_bindings.append(IOBinding(name, name, p.shape, p.dtype.name))
    for t, name in memory.buffer_of.items():
        role = "variable" if name.startswith("var:") else "output" if name.startswith("out") \
            else "scratch"
        size = max(memory.sizes.get(name, t.type.nbytes), 1)
        if name in memory.views:
            parent, offset, nbytes = memory.views[name]
            buffers[name] = BufferSpec(name, nbytes, role, parent, offset)
        elif name not in buffers or buffers[name].nbytes < size:
            buffers[name] = BufferSpec(name, size, role)
    variable_bindings = _leaf_buffers(leaf_map, buffers, leaves, kernels, read_by_host)
    for kernel in kernels:
        for name, nbytes in kernel.private:
            buffers[name] = BufferSpec(name, nbytes, "scratch")
    if any(STEP_BUFFER in k.args for k in kernels):
        buffers[STEP_BUFFER] = BufferSpec(STEP_BUFFER, 8, "input")
        input_bindings.append(IOBinding(STEP_BUFFER, STEP_BUFFER, (1,), "uint64"))
    launches = tuple(_launch(k, device) for k in kernels)
    outputs = tuple(IOBinding(f"out{i}", memory.buffer_of[t], t.shape, t.dtype.name)
                    for i, t in enumerate(outs))
    plan = Plan(program.source, "", tuple(buffers.values()), tuple(input_bindings), outputs,
                tuple(variable_bindings), launches)
    return plan, leaves


def _with_host_calls(plan: Plan, hosts: list[HostStep], buffer_of: dict, name: str,
                     graph: Graph) -> Plan:
    """The plan with its collectives as host calls (codegen/host.py)."""
    buffers = {spec.name: spec for spec in plan.buffers}
    calls = host_calls(hosts, buffer_of, plan.launches, buffers, name, graph_fingerprint(graph))
    return replace(plan, host_calls=calls)


def _leaf_buffers(leaf_map, buffers, leaves, kernels, read_by_host=frozenset()) -> list:
    """Variables and constants the kernels or host calls use: device-resident, bound by name."""
    used = {a for k in kernels for a in k.args} | set(read_by_host)
    bindings = []
    for leaf, name in leaf_map.items():
        if leaf.role == "placeholder" or name not in used:
            continue
        leaves[name] = leaf
        buffers[name] = BufferSpec(name, max(leaf.type.nbytes, 1), "variable")
        bindings.append(IOBinding(name, name, leaf.shape, leaf.dtype.name))
    return bindings


def _leaf_names(graph: Graph) -> dict[Tensor, str]:
    """Stable buffer names for leaves (`in:x`, `var:W1`, `const:2`); repeats get `#2`."""
    names, taken = {}, set()
    for index, leaf in enumerate(graph.inputs):
        kind = {"placeholder": "in", "variable": "var", "constant": "const"}[leaf.role]
        base = f"{kind}:{leaf.name or index}"
        name, copy = base, 2
        while name in taken:
            name, copy = f"{base}#{copy}", copy + 1
        taken.add(name)
        names[leaf] = name
    return names


def _unique_input_name(p: Tensor, buffers: dict) -> str:
    """An input the graph does not read still gets a buffer of its own."""
    name, copy = f"in:{p.name}", 2
    while name in buffers:
        name, copy = f"in:{p.name}#{copy}", copy + 1
    return name


def _launch(kernel: RenderedKernel, device) -> KernelLaunch:
    items = kernel.work_items
    if kernel.global_size is not None:
        return KernelLaunch(kernel.name, tuple(BufferArg(a) for a in kernel.args),
                            kernel.global_size, kernel.local_size, kernel.flops,
                            kernel.bytes_read, kernel.bytes_written, kernel.ops)
    group = _work_group(device)
    items, local = -(-items // group) * group, (group,)    # kernels skip the padding items
    args = tuple(BufferArg(a) for a in kernel.args) + \
        tuple(ScalarArg(v, "int32") for v in kernel.scalars)
    return KernelLaunch(kernel.name, args, (items,), local,
                        kernel.flops, kernel.bytes_read, kernel.bytes_written, kernel.ops)
