"""gc.random: seeded, counter-based random tensors (Philox-4x32-10)."""
from graphc.ops.random import *        # noqa: F401,F403
from graphc.ops.random import DEFAULT_GLOBAL_SEED  # noqa: F401
