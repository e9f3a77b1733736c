"""Input images: the providers' rules, checked locally before anything is submitted.

The rules (docs/wire/novita.md §2.2, the strictest common reading): jpeg, png, webp, bmp,
tiff or gif; under 30 MB; each side in (300, 6000) px and width/height in (0.4, 2.5), both
open intervals as the providers write them ("shorter side > 300 px, longer side < 6000
px"). The header is checked first (Pillow's `Image.open` is lazy); then the data past it,
where that is cheap (image_data.py: complete file, nothing after its end, no decompression
bomb).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from PIL import Image

from genbatch.errors import GenbatchError
from genbatch.image_data import IncompleteImage, check_complete

# A local image copied into object storage by the producer: `stored:<object key>`.
STORED_PREFIX = "stored:"
# Another row's last frame, `@<custom_id>`: a chained shot (producer/chains.py).
CHAIN_PREFIX = "@"
FORMATS: tuple[str, ...] = ("jpeg", "png", "webp", "bmp", "tiff", "gif")
MAX_BYTES = 30_000_000  # "< 30 MB"; decimal megabytes, the stricter reading
MIN_SIDE = 300
MAX_SIDE = 6000
# Aspect ratio bounds 0.4 and 2.5 as exact fractions, both excluded: 2.5 itself is out.
_MIN_RATIO = (2, 5)
_MAX_RATIO = (5, 2)

_PILLOW_FORMATS: dict[str, tuple[str, ...]] = {
    "jpeg": ("JPEG", "MPO"),  # cameras and phones write MPO: a JPEG with extra frames
    "png": ("PNG",),
    "webp": ("WEBP",),
    "bmp": ("BMP",),
    "tiff": ("TIFF",),
    "gif": ("GIF",),
}
_ALIASES = {"jpg": "jpeg", "tif": "tiff"}
_ACCEPTED = "jpeg, png, webp, bmp, tiff or gif"
_DATA_URI = re.compile(r"data:image/([A-Za-z0-9.+-]+);base64,(.*)", re.DOTALL)


class ImageProblem(GenbatchError):
    """Raised when an input image breaks the providers' rules or cannot be read."""


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What the header of an acceptable image says."""

    format: str  # one of FORMATS
    width: int
    height: int
    size_bytes: int


def probe_image(path: Path) -> ImageInfo:
    """Check a local image file against the rules; raise ImageProblem naming the first break."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise ImageProblem(f"image path {path} is not a file")
        _check_size(size)
        with path.open("rb") as f:
            return _probe(f, size)
    except FileNotFoundError:
        raise ImageProblem(f"image file {path} does not exist") from None
    except OSError as exc:
        raise ImageProblem(f"cannot read image file {path}: {exc.strerror or exc}") from exc


def probe_data_uri(ref: str) -> ImageInfo:
    """Check a `data:image/<fmt>;base64,…` image against the same rules."""
    match = _DATA_URI.fullmatch(ref.strip())
    if match is None:
        raise ImageProblem("data URI must look like data:image/<format>;base64,<data>")
    declared = _ALIASES.get(match.group(1).lower(), match.group(1).lower())
    try:
        data = base64.b64decode(match.group(2), validate=True)
    except binascii.Error:
        raise ImageProblem("data URI does not hold valid base64") from None
    _check_size(len(data))
    actual = sniff_format(data)
    if declared != actual:
        raise ImageProblem(f"data URI says image/{match.group(1)} but holds a {actual} image")
    with io.BytesIO(data) as f:
        return _probe(f, len(data))


def probe_head(head: bytes, size: int) -> ImageInfo:
    """Check an image from its first bytes (`head`) and its full size, as read from object
    storage with a ranged GET; raise ImageProblem naming the first break."""
    _check_size(size)
    with io.BytesIO(head) as f:
        return _probe(f, size)


def is_remote(ref: str) -> bool:
    """True for an http(s) URL with a host."""
    try:
        parts = urlsplit(ref)
    except ValueError:  # e.g. an unbalanced "[" in the host
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def is_chained(ref: object) -> bool:
    """True for `@<custom_id>`: the last frame of that row's video, which does not exist yet
    (the worker replaces it with the stored frame: worker/chains.py)."""
    return isinstance(ref, str) and ref.startswith(CHAIN_PREFIX)


def is_data_uri(ref: str) -> bool:
    """True for any `data:` URI (whether it holds a valid image is `probe_data_uri`'s job)."""
    return ref[:5].lower() == "data:"


def data_uri(data: bytes, fmt: str) -> str:
    """`data:image/<fmt>;base64,<data>`, the inline form the providers accept."""
    name = _ALIASES.get(fmt.lower(), fmt.lower())
    if name not in FORMATS:
        raise ImageProblem(f"image format {fmt!r} is not accepted; use {_ACCEPTED}")
    return f"data:image/{name};base64,{base64.b64encode(data).decode('ascii')}"


def sniff_format(data: bytes) -> str:
    """The image format named by the first bytes of `data`, without decoding anything."""
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if head.startswith(b"BM"):
        return "bmp"
    raise ImageProblem(f"file is not a {_ACCEPTED} image")


def _probe(f: BinaryIO, size: int) -> ImageInfo:
    fmt = sniff_format(f.read(16))
    f.seek(0)
    try:
        with Image.open(f, formats=_PILLOW_FORMATS[fmt]) as img:
            width, height = img.size
            _check_dimensions(width, height)
            check_complete(f, img, fmt, size)
    except (ImageProblem, IncompleteImage) as exc:
        raise ImageProblem(str(exc)) from None
    except Image.DecompressionBombError:
        raise ImageProblem(
            f"image header claims far more pixels than {MAX_SIDE}x{MAX_SIDE}"
        ) from None
    except Exception as exc:  # Pillow signals a bad header with many exception types
        raise ImageProblem(f"{fmt} header is truncated or corrupt") from exc
    return ImageInfo(format=fmt, width=width, height=height, size_bytes=size)


def _check_size(size: int) -> None:
    if size == 0:
        raise ImageProblem("image is empty")
    if size >= MAX_BYTES:
        raise ImageProblem(f"image is {size / 1e6:.1f} MB; it must be under 30 MB")


def _check_dimensions(width: int, height: int) -> None:
    if not (MIN_SIDE < width < MAX_SIDE and MIN_SIDE < height < MAX_SIDE):
        raise ImageProblem(
            f"image is {width}x{height} px; each side must be over {MIN_SIDE} and under "
            f"{MAX_SIDE} px"
        )
    low_num, low_den = _MIN_RATIO
    high_num, high_den = _MAX_RATIO
    if width * low_den <= height * low_num or width * high_den >= height * high_num:
        raise ImageProblem(
            f"image is {width}x{height} px (aspect ratio {width / height:.2f}); "
            "width/height must be over 0.4 and under 2.5"
        )

