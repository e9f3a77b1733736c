"""Where `s3://` input images may come from: bucket prefixes, allowed the way local input
folders are (producer/inputs.py).

A root is `s3://bucket/prefix` (a whole bucket: `s3://bucket`). An image is inside a root
when it is in the same bucket and its key starts with the prefix followed by `/`, so
`s3://b/run` allows `s3://b/run/x.png` but not `s3://b/run2/x.png`. A key with a `.` or `..`
segment is inside no root: S3 keeps such a key as written, but an HTTP client fetching a
presigned URL may collapse it and reach another prefix.

A batch's roots are its manifest's own bucket prefix and the `s3://` entries of
GENBATCH_INPUT_ROOTS at submit time; they are recorded on the batch (`object_roots`), and
the worker checks each image against them again before it signs or reads it.
"""

from __future__ import annotations

from collections.abc import Iterable

from genbatch.errors import InputNotAllowed, StorageError
from genbatch.records import Batch
from genbatch.storage.urls import is_object_url, split_object_url

SEPARATOR = "\n"  # between roots in the batch record (a prefix may hold ':' or ' ')


def object_root(url: str) -> str:
    """`url` (`s3://bucket` or `s3://bucket/prefix/`) as a root: `s3://bucket/prefix/`."""
    text = url.strip()
    if not is_object_url(text):
        raise StorageError(f"input root {url!r} is not s3://bucket or s3://bucket/prefix")
    bucket, _, prefix = text[5:].partition("/")
    prefix = prefix.strip("/")
    if not bucket or _has_dot_segment(prefix):
        raise StorageError(f"input root {url!r} is not s3://bucket or s3://bucket/prefix")
    return f"s3://{bucket}/{prefix}/" if prefix else f"s3://{bucket}/"


def manifest_root(manifest: str) -> str | None:
    """The bucket prefix a manifest in object storage sits in (None for a local one)."""
    if not is_object_url(manifest.strip()):
        return None
    try:
        split_object_url(manifest)
    except StorageError:
        return None
    return object_root(manifest.strip().rsplit("/", 1)[0])


def batch_roots(manifest: str, recorded: str, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """A batch's roots: its manifest's prefix, those it recorded, and `extra` (in order,
    each once)."""
    roots = [manifest_root(manifest), *recorded.split(SEPARATOR), *extra]
    return tuple(dict.fromkeys(object_root(r) for r in roots if r))


def batch_object_roots(batch: Batch) -> tuple[str, ...]:
    """The bucket prefixes batch `batch`'s `s3://` images may come from: its manifest's and
    those recorded at submit (a batch from before they were recorded: its manifest's)."""
    return batch_roots(batch.get("manifest") or "", batch.get("object_roots") or "")


def check_inside(field: str, url: str, roots: tuple[str, ...]) -> None:
    """Raise InputNotAllowed (naming `field`, the object and `roots`) unless `url` is inside."""
    if not inside(url, roots):
        raise InputNotAllowed(f"{field}: {outside_message(url, roots)}")


def inside(url: str, roots: Iterable[str]) -> bool:
    """True when the object `url` names lies under one of `roots` (as `object_root` gives)."""
    try:
        bucket, key = split_object_url(url)
    except StorageError:
        return False
    if _has_dot_segment(key):
        return False
    return any(f"s3://{bucket}/{key}".startswith(root) for root in roots)


def outside_message(url: str, roots: tuple[str, ...]) -> str:
    """The one-line reason an image outside `roots` is refused, naming what is allowed."""
    allowed = ", ".join(roots) if roots else "none"
    return (f"{url} is outside the allowed input prefixes ({allowed}); add its prefix to "
            "GENBATCH_INPUT_ROOTS (s3://bucket/prefix)")


def _has_dot_segment(key: str) -> bool:
    return any(part in (".", "..") for part in key.split("/"))
