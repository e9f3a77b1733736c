"""An image's data, checked past its header where that is cheap: the file is complete, holds
nothing after its end, and inflates to exactly what its header's dimensions need.

- **PNG**: the chunks are walked to `IEND`, which must end the file; the `IDAT` stream is
  inflated in 64 KB pieces that are counted and dropped (memory stays flat) and must give
  exactly the bytes the header's width, height, colour type and interlacing call for. More
  is a zlib bomb, refused as soon as the count passes it; less is a truncated image.
- **JPEG**: the file must end with the end-of-image marker (`FF D9`), and its scans are
  decoded at 1/8 scale (the DCT's own reduction: cheap), which fails on a cut stream.
- **WebP, GIF, BMP, TIFF**: decoded in full by Pillow (each side is at most 6000 px, so
  this is bounded: up to 144 MB for a moment on the largest allowed image).

Pillow's decompression-bomb guard (`Image.MAX_IMAGE_PIXELS`) still applies when a header is
opened; the side limits refuse far smaller images first.
"""

from __future__ import annotations

import math
import struct
import zlib
from typing import BinaryIO

from PIL import Image

from genbatch.errors import GenbatchError

PIECE = 65536  # bytes inflated (and dropped) at a time
JPEG_EOI = b"\xff\xd9"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
# Adam7 passes: (first column, first row, column step, row step).
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))


class IncompleteImage(GenbatchError):
    """Raised when an image's data is cut short, corrupt, followed by junk, or a bomb."""


def check_complete(f: BinaryIO, img: Image.Image, fmt: str, size: int) -> None:
    """Raise IncompleteImage unless the image in `f` (opened as `img`) is whole."""
    if fmt == "png":
        _check_png(f, size)
    elif fmt == "jpeg":
        _check_jpeg(f, img, size)
    else:
        _decode(img, fmt)


def png_raw_size(width: int, height: int, bit_depth: int, colour_type: int,
                 interlaced: bool) -> int:
    """Bytes of filtered scanlines the IDAT stream of such a PNG inflates to."""
    bits = _PNG_CHANNELS.get(colour_type, 4) * bit_depth
    if not interlaced:
        return height * (1 + math.ceil(width * bits / 8))
    total = 0
    for x0, y0, dx, dy in _ADAM7:
        cols = max(0, math.ceil((width - x0) / dx))
        rows = max(0, math.ceil((height - y0) / dy))
        if cols and rows:
            total += rows * (1 + math.ceil(cols * bits / 8))
    return total


def _check_png(f: BinaryIO, size: int) -> None:
    f.seek(len(PNG_SIGNATURE))
    inflater = _Inflater(0)
    while True:
        head = f.read(8)
        if len(head) < 8:
            raise IncompleteImage("png data is truncated (no IEND chunk)")
        length, kind = struct.unpack(">I4s", head)
        if kind == b"IHDR":
            inflater = _Inflater(_ihdr_raw_size(_read(f, length)))
        elif kind == b"IDAT":
            _inflate_chunk(f, length, inflater)
        else:
            _skip(f, length)
        _read(f, 4)  # CRC
        if kind == b"IEND":
            break
    if f.tell() != size:
        raise IncompleteImage(f"png has {size - f.tell()} bytes after its end (IEND)")
    inflater.finish()


def _ihdr_raw_size(body: bytes) -> int:
    if len(body) < 13:
        raise IncompleteImage("png header is truncated or corrupt")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body[:13])
    return png_raw_size(width, height, depth, colour, interlace == 1)


class _Inflater:
    """Inflates a PNG's IDAT stream piece by piece, counting what comes out."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.out = 0
        self._z = zlib.decompressobj()

    def feed(self, data: bytes) -> None:
        try:
            while data:
                self.out += len(self._z.decompress(data, PIECE))
                if self.out > self.expected:
                    raise IncompleteImage(
                        "png pixel data inflates past what its size needs (a decompression "
                        "bomb)")
                data = self._z.unconsumed_tail
        except zlib.error:
            raise IncompleteImage("png pixel data is corrupt (not a zlib stream)") from None

    def finish(self) -> None:
        if not self._z.eof or self.out != self.expected:
            raise IncompleteImage("png pixel data is truncated (fewer pixels than its size)")


def _inflate_chunk(f: BinaryIO, length: int, inflater: _Inflater) -> None:
    left = length
    while left:
        data = f.read(min(left, PIECE))
        if not data:
            raise IncompleteImage("png data is truncated (a chunk is cut short)")
        inflater.feed(data)
        left -= len(data)


def _read(f: BinaryIO, length: int) -> bytes:
    data = f.read(length)
    if len(data) < length:
        raise IncompleteImage("png data is truncated (a chunk is cut short)")
    return data


def _skip(f: BinaryIO, length: int) -> None:
    start = f.tell()
    f.seek(length, 1)
    if f.seek(0, 2) < start + length:
        raise IncompleteImage("png data is truncated (a chunk is cut short)")
    f.seek(start + length)


def _check_jpeg(f: BinaryIO, img: Image.Image, size: int) -> None:
    f.seek(max(0, size - 2))
    if f.read(2) != JPEG_EOI:
        raise IncompleteImage("jpeg data is truncated or has bytes after its end (no "
                              "end-of-image marker at the end of the file)")
    width, height = img.size
    img.draft("RGB", (max(1, width // 8), max(1, height // 8)))
    _decode(img, "jpeg")


def _decode(img: Image.Image, fmt: str) -> None:
    try:
        img.load()
    except Image.DecompressionBombError:
        raise
    except Exception as exc:  # Pillow reports a bad stream with many exception types
        raise IncompleteImage(f"{fmt} data is truncated or corrupt") from exc
