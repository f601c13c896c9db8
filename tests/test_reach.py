"""Reachability (graphc.passes.reach) against networkx on random DAGs and merges."""
from __future__ import annotations

import itertools
import random

import networkx as nx
import pytest

from graphc.passes.reach import Reachability


def random_dag(rng: random.Random, n: int, p: float) -> nx.DiGraph:
    """Edges only from lower to higher numbers, in a shuffled insertion order."""
    dag = nx.DiGraph()
    nodes = list(range(n))
    rng.shuffle(nodes)
    dag.add_nodes_from(nodes)
    dag.add_edges_from((a, b) for a, b in itertools.combinations(range(n), 2)
                       if rng.random() < p)
    return dag


def mergeable(dag: nx.DiGraph, a, b) -> bool:
    """Contracting b into a keeps a DAG: no path between them but a direct edge."""
    if dag.has_edge(a, b):
        dag.remove_edge(a, b)
        ok = not nx.has_path(dag, a, b)
        dag.add_edge(a, b)
        return ok
    return not (nx.has_path(dag, a, b) or nx.has_path(dag, b, a))


def assert_same(reach: Reachability, dag: nx.DiGraph) -> None:
    for a, b in itertools.permutations(dag.nodes, 2):
        assert reach.path(a, b) == nx.has_path(dag, a, b), (a, b)


@pytest.mark.parametrize("seed", range(40))
def test_paths_match_networkx_through_merges(seed):
    rng = random.Random(seed)
    dag = random_dag(rng, rng.randint(2, 14), rng.choice([0.1, 0.25, 0.5]))
    reach = Reachability(dag)
    assert_same(reach, dag)
    for _ in range(20):
        a, b = rng.sample(list(dag.nodes), 2) if len(dag) > 1 else (None, None)
        if a is None or not mergeable(dag, a, b):
            continue
        nx.contracted_nodes(dag, a, b, self_loops=False, copy=False)
        reach.merge(a, b)
        assert_same(reach, dag)


def test_a_node_does_not_reach_itself():
    dag = nx.DiGraph([(0, 1)])
    reach = Reachability(dag)
    assert reach.path(0, 1) and not reach.path(1, 0) and not reach.path(0, 0)
