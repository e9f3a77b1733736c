"""genbatch: run large manifests through asynchronous image-to-video generation APIs.

`genbatch.Client` is the Python API (what the `genbatch` commands do); it is imported on
first use, so `import genbatch` (and `genbatch.simulator`) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genbatch.client import Client

__version__ = "0.1.0"
__all__ = ["Client", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Client":
        from genbatch.client import Client

        return Client
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
