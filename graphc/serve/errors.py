"""The server's error, raised where it starts (graphc/serve/__init__.py) and by its app."""
from __future__ import annotations

from graphc.runtime.errors import GraphcError


class ServeError(GraphcError):
    """The server cannot start: the serve extra is missing, or the address is taken."""
