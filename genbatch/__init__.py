"""genbatch: run large manifests through asynchronous image-to-video generation APIs.

The Python API (docs/python-api.md)::

    import genbatch

    client = genbatch.Client()
    batch = client.submit("manifest.csv", provider="novita")
    batch.wait()
    for row in batch.results():
        print(row.custom_id, row.output_uri)

`Client` and the types it returns are imported on first use, so `import genbatch` (and
`genbatch.simulator`) stays cheap. Errors: `genbatch.errors` (root `GenbatchError`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genbatch.client import Client, SubmitOptions
    from genbatch.client.handle import BatchHandle
    from genbatch.client.outcomes import ResumeOutcome, SubmitOutcome
    from genbatch.client.rows import Attempt, BatchInfo, ErrorRow, ResultRow
    from genbatch.config import Settings
    from genbatch.errors import GenbatchError

from genbatch.version import __version__ as __version__

_LAZY = {
    "Client": "genbatch.client", "SubmitOptions": "genbatch.client",
    "BatchHandle": "genbatch.client.handle", "SubmitOutcome": "genbatch.client.outcomes",
    "ResumeOutcome": "genbatch.client.outcomes", "BatchInfo": "genbatch.client.rows",
    "ResultRow": "genbatch.client.rows", "ErrorRow": "genbatch.client.rows",
    "Attempt": "genbatch.client.rows", "Settings": "genbatch.config",
    "GenbatchError": "genbatch.errors",
}
__all__ = ["Attempt", "BatchHandle", "BatchInfo", "Client", "ErrorRow", "GenbatchError",
           "ResultRow", "ResumeOutcome", "Settings", "SubmitOptions", "SubmitOutcome",
           "__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
