"""Input images in object storage (`s3://bucket/key` in `image` / `last_image`), checked
before anything is submitted by reading only their first bytes (a ranged GET).

The header of a JPEG may sit behind large EXIF or ICC blocks, so a header that does not
parse in the first `HEAD_BYTES` is read once more with `MORE_BYTES`.
"""

from __future__ import annotations

from genbatch.errors import StorageError
from genbatch.images import ImageProblem, probe_head
from genbatch.storage.urls import ObjectUrls

HEAD_BYTES = 64 * 1024
MORE_BYTES = 2 * 1024 * 1024


def object_image_problem(objects: ObjectUrls | None, url: str) -> str | None:
    """What is wrong with the image object at `url`, or None when it is acceptable."""
    if objects is None:
        return "images in object storage need the storage settings (GENBATCH_S3_*)"
    try:
        head, size = objects.read_head(url, HEAD_BYTES)
        try:
            probe_head(head, size)
        except ImageProblem:
            if size <= len(head):
                raise
            head, size = objects.read_head(url, MORE_BYTES)
            probe_head(head, size)
    except (ImageProblem, StorageError) as exc:
        return str(exc)
    return None
