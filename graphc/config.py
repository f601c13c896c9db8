"""Environment switches, read when used (never at import), so tests can set them."""
from __future__ import annotations

import os


def debug_level() -> int:
    """GRAPHC_DEBUG: 1 pipeline summary, 2 per-kernel times, 3 IR after each pass, 4 source."""
    try:
        return int(os.environ.get("GRAPHC_DEBUG", "0") or 0)
    except ValueError:
        return 0


def flag(name: str) -> bool:
    """True when environment variable `name` is set to something other than '', '0'."""
    return os.environ.get(name, "") not in ("", "0")
