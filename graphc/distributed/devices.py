"""Which device a rank uses: the local_rank-th of the best kind, when a host has several."""
from __future__ import annotations


def rank_device(found: list, local_rank: int):
    """Among `found` devices, those of the best device's kind on its platform, in index
    order; the one at `local_rank` (wrapping around when ranks outnumber them)."""
    from graphc.runtime.device import best_device
    best = best_device(found)
    peers = sorted((d for d in found if d.kind == best.kind
                    and d.platform_name == best.platform_name), key=lambda d: d.index)
    return peers[local_rank % len(peers)]
