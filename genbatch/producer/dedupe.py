"""The identity of a submission: the manifest's bytes with the options that shape its batch,
or an explicit idempotency key. Two submits with the same identity within
GENBATCH_DUPLICATE_WINDOW_S are one batch (see Client.submit and store/submissions.py)."""

from __future__ import annotations

import hashlib
import json

from genbatch.producer.manifest import ManifestSource
from genbatch.producer.options import BatchOptions

CHUNK = 1 << 20


def submission_key(source: ManifestSource, provider: str | None, model: str | None,
                   options: BatchOptions, idempotency_key: str | None = None) -> str:
    """`key:<sha256 of the idempotency key>`, else `content:<sha256 of the manifest's bytes,
    the default provider and model, and the batch options>` (read in chunks)."""
    if idempotency_key:
        return "key:" + hashlib.sha256(idempotency_key.encode()).hexdigest()
    digest = hashlib.sha256()
    with source.open() as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    digest.update(json.dumps([provider, model, options.meta()], sort_keys=True).encode())
    return "content:" + digest.hexdigest()
