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
    from genbatch.errors import (
        ConfigError,
        GenbatchError,
        ManifestError,
        ManifestRejected,
        NotFoundError,
        ProviderError,
        RequestInvalid,
        StorageError,
        StoreError,
        StoreUnavailable,
        WaitTimeout,
    )

from genbatch.version import __version__ as __version__

# The errors a caller of the Python API may want to catch (all GenbatchError).
ERRORS = ("ConfigError", "ManifestError", "ManifestRejected", "NotFoundError", "ProviderError",
          "RequestInvalid", "StorageError", "StoreError", "StoreUnavailable", "WaitTimeout")
_LAZY = {
    "Client": "genbatch.client", "SubmitOptions": "genbatch.client",
    "BatchHandle": "genbatch.client.handle", "SubmitOutcome": "genbatch.client.outcomes",
    "ResumeOutcome": "genbatch.client.outcomes", "BatchInfo": "genbatch.client.rows",
    "ResultRow": "genbatch.client.rows", "ErrorRow": "genbatch.client.rows",
    "Attempt": "genbatch.client.rows", "Settings": "genbatch.config",
    "GenbatchError": "genbatch.errors",
    **dict.fromkeys(ERRORS, "genbatch.errors"),
}
__all__ = ["Attempt", "BatchHandle", "BatchInfo", "Client", "ConfigError", "ErrorRow",
           "GenbatchError", "ManifestError", "ManifestRejected", "NotFoundError",
           "ProviderError", "RequestInvalid", "ResultRow", "ResumeOutcome", "Settings",
           "StorageError", "StoreError", "StoreUnavailable", "SubmitOptions", "SubmitOutcome",
           "WaitTimeout", "__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
