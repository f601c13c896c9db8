"""Checking what the user feeds for placeholders: FeedError before anything runs."""
from __future__ import annotations

import numpy as np

from graphc.errors import FeedError
from graphc.ir import Tensor


def resolve_feed_keys(feed: dict, placeholders) -> dict[Tensor, object]:
    """Map feed keys (tensors or placeholder names) to tensors."""
    by_name = {p.name: p for p in placeholders}
    resolved = {}
    for key, value in (feed or {}).items():
        if isinstance(key, str):
            if key not in by_name:
                raise FeedError(f"feed names {key!r}, but the graph has no placeholder of that"
                                f" name (placeholders: {', '.join(sorted(by_name)) or 'none'})")
            key = by_name[key]
        elif not isinstance(key, Tensor):
            raise FeedError(f"feed keys must be tensors or placeholder names, got {key!r}")
        resolved[key] = value
    return resolved


def check_feed(placeholder: Tensor, value) -> np.ndarray:
    """The fed value as an array of the placeholder's dtype, or FeedError saying what was wanted."""
    if (type(value) is np.ndarray and value.dtype == placeholder.dtype
            and value.shape == placeholder.shape and value.flags.c_contiguous):
        return value        # the common case, checked without building the error texts
    expected = f"{placeholder.type} ({placeholder.dtype.name}{list(placeholder.shape)})"
    where = f"\n  placeholder created at {placeholder.site}" if placeholder.site else ""
    try:
        array = np.asarray(value)
    except Exception as exc:        # ragged lists and the like
        raise FeedError(f"placeholder {placeholder.name!r} expects {expected}: cannot make an"
                        f" array of the fed value ({exc}){where}") from None
    if array.shape != placeholder.shape:
        raise FeedError(f"placeholder {placeholder.name!r} expects shape {placeholder.shape},"
                        f" got {array.shape} ({expected} wanted){where}")
    if array.dtype != placeholder.dtype and not np.can_cast(array.dtype, placeholder.dtype,
                                                            casting="same_kind"):
        raise FeedError(f"placeholder {placeholder.name!r} expects dtype "
                        f"{placeholder.dtype.name}, got {array.dtype.name}{where}")
    return np.asarray(array, dtype=placeholder.dtype, order="C")


def missing_feed_error(placeholder: Tensor) -> FeedError:
    """The error for a placeholder the graph needs but nobody fed."""
    where = f" (created at {placeholder.site})" if placeholder.site else ""
    return FeedError(f"placeholder {placeholder.name!r} of type {placeholder.type} was not fed"
                     f"{where}")
