"""Local image checks: real images made with Pillow, plus hand-built headers."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from genbatch.errors import GenbatchError
from genbatch.image_data import png_raw_size
from genbatch.images import (
    FORMATS,
    ImageInfo,
    ImageProblem,
    data_uri,
    is_data_uri,
    is_remote,
    probe_data_uri,
    probe_image,
    sniff_format,
)

PILLOW_NAME = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "bmp": "BMP", "tiff": "TIFF",
               "gif": "GIF"}


def image_bytes(width: int, height: int, fmt: str = "png") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 90)).save(out, PILLOW_NAME[fmt])
    return out.getvalue()


def write_image(folder: Path, width: int, height: int, fmt: str = "png") -> Path:
    path = folder / f"img-{width}x{height}.{fmt}"
    path.write_bytes(image_bytes(width, height, fmt))
    return path


def chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body)
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def png_header(width: int, height: int, pixels: bytes | None = None) -> bytes:
    """A 1-bit grey PNG of width x height built by hand (cheap at any size): all black, or
    with `pixels` as its IDAT data as given."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    if pixels is None:
        row = b"\x00" * (1 + (width + 7) // 8)
        pixels = zlib.compress(row * height, 1)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", pixels)
            + chunk(b"IEND", b""))


def problem(path: Path) -> str:
    with pytest.raises(ImageProblem) as info:
        probe_image(path)
    return str(info.value)


# --- probe_image: accepted images -------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_accepted_format_is_probed(tmp_path: Path, fmt: str) -> None:
    path = write_image(tmp_path, 640, 480, fmt)

    info = probe_image(path)

    assert info == ImageInfo(format=fmt, width=640, height=480,
                             size_bytes=path.stat().st_size)


def test_mpo_from_a_camera_counts_as_jpeg(tmp_path: Path) -> None:
    frame = Image.new("RGB", (800, 600), "blue")
    path = tmp_path / "photo.jpg"
    frame.save(path, "MPO", save_all=True, append_images=[frame])
    assert Image.open(path).format == "MPO"

    assert probe_image(path).format == "jpeg"


@pytest.mark.parametrize(
    ("width", "height"),
    [(301, 301), (5999, 5999), (749, 301), (301, 749),
     (5999, 2400), (2400, 5999), (1280, 720)],
)
def test_boundaries_that_are_allowed(width: int, height: int) -> None:
    info = probe_data_uri(data_uri(png_header(width, height), "png"))
    assert (info.width, info.height) == (width, height)


def test_a_sound_header_over_garbage_pixels_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "header-only.png"
    path.write_bytes(png_header(4000, 2000, b"not zlib at all"))

    assert problem(path) == "png pixel data is corrupt (not a zlib stream)"


# --- probe_image: refused images --------------------------------------------------------------


def test_too_small(tmp_path: Path) -> None:
    assert problem(write_image(tmp_path, 200, 200)) == (
        "image is 200x200 px; each side must be over 300 and under 6000 px"
    )


def test_too_wide_for_the_aspect_ratio(tmp_path: Path) -> None:
    assert problem(write_image(tmp_path, 3000, 400, "jpeg")) == (
        "image is 3000x400 px (aspect ratio 7.50); width/height must be over 0.4 and under 2.5"
    )


@pytest.mark.parametrize(
    ("width", "height", "words"),
    [(300, 600, "each side"), (6000, 3000, "each side"), (3000, 6000, "each side"),
     (1000, 400, "aspect ratio 2.50"), (400, 1000, "aspect ratio 0.40"),
     (20000, 20000, "far more pixels")],
)
def test_boundaries_that_are_refused(width: int, height: int, words: str) -> None:
    with pytest.raises(ImageProblem, match=words):
        probe_data_uri(data_uri(png_header(width, height), "png"))


def test_31_mb_file_is_refused_before_it_is_opened(tmp_path: Path) -> None:
    path = write_image(tmp_path, 640, 480)
    with path.open("r+b") as f:
        f.truncate(31_000_000)

    assert problem(path) == "image is 31.0 MB; it must be under 30 MB"


@pytest.mark.parametrize(("size", "ok"), [(29_999_999, True), (30_000_000, False)])
def test_size_limit_boundary(tmp_path: Path, size: int, ok: bool) -> None:
    path = write_image(tmp_path, 640, 480)
    with path.open("r+b") as f:
        f.truncate(size)

    if ok:  # past the size check: refused for the padding after the image's end instead
        padding = size - len(image_bytes(640, 480))
        assert problem(path) == f"png has {padding} bytes after its end (IEND)"
    else:
        assert "must be under 30 MB" in problem(path)


def test_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("custom_id,prompt\n1,hello\n")
    assert problem(path) == "file is not a jpeg, png, webp, bmp, tiff or gif image"


def test_other_image_formats_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "icon.ico"
    Image.new("RGB", (256, 256)).save(path, "ICO")
    assert "not a jpeg, png, webp, bmp, tiff or gif" in problem(path)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
@pytest.mark.parametrize(("fmt", "keep"), [("png", 20), ("jpeg", 30), ("gif", 8), ("webp", 16),
                                           ("tiff", 10), ("bmp", 20)])
def test_truncated_header(tmp_path: Path, fmt: str, keep: int) -> None:
    path = tmp_path / f"cut.{fmt}"
    path.write_bytes(image_bytes(640, 480, fmt)[:keep])
    assert problem(path) == f"{fmt} header is truncated or corrupt"


def test_missing_empty_and_folder(tmp_path: Path) -> None:
    absent = tmp_path / "absent.png"
    assert problem(absent) == f"image file {absent} does not exist"
    (tmp_path / "empty.png").write_bytes(b"")
    assert problem(tmp_path / "empty.png") == "image is empty"
    assert "is not a file" in problem(tmp_path)


def test_image_problem_is_a_genbatch_error() -> None:
    assert issubclass(ImageProblem, GenbatchError)


@given(width=st.integers(1, 9000), height=st.integers(1, 9000))
def test_accepts_exactly_what_the_rules_allow(width: int, height: int) -> None:
    allowed = (300 < width < 6000 and 300 < height < 6000
               and Fraction(2, 5) < Fraction(width, height) < Fraction(5, 2))
    header = png_header(width, height)
    ref = data_uri(header, "png")
    if allowed:
        assert probe_data_uri(ref) == ImageInfo("png", width, height, len(header))
    else:
        with pytest.raises(ImageProblem):
            probe_data_uri(ref)


# --- sniffing, data URIs, references ----------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_sniff_format_agrees_with_pillow(fmt: str) -> None:
    data = image_bytes(320, 320, fmt)
    assert sniff_format(data) == fmt
    assert Image.open(io.BytesIO(data)).format == PILLOW_NAME[fmt]


@pytest.mark.parametrize("data", [b"", b"\x00" * 64, b"%PDF-1.7", b"RIFF\x00\x00\x00\x00WAVE",
                                  b"\x00\x00\x00\x18ftypmp42"])
def test_sniff_format_refuses_non_images(data: bytes) -> None:
    with pytest.raises(ImageProblem):
        sniff_format(data)


def test_data_uri_round_trip() -> None:
    data = image_bytes(640, 360, "jpeg")

    ref = data_uri(data, "JPG")

    assert ref.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(ref.split(",", 1)[1]) == data
    assert is_data_uri(ref)
    assert probe_data_uri(ref) == ImageInfo("jpeg", 640, 360, len(data))


def test_data_uri_refuses_unknown_format() -> None:
    with pytest.raises(ImageProblem, match="'svg' is not accepted"):
        data_uri(b"<svg/>", "svg")


@pytest.mark.parametrize(
    ("ref", "words"),
    [("data:text/plain;base64,aGk=", "must look like"),
     ("data:image/png,rawbytes", "must look like"),
     ("data:image/png;base64,%%%notbase64", "not hold valid base64"),
     ("data:image/png;base64,", "empty")],
)
def test_bad_data_uris(ref: str, words: str) -> None:
    with pytest.raises(ImageProblem, match=words):
        probe_data_uri(ref)


def test_data_uri_whose_bytes_contradict_its_type() -> None:
    ref = "data:image/png;base64," + base64.b64encode(image_bytes(640, 360, "jpeg")).decode()
    with pytest.raises(ImageProblem, match="says image/png but holds a jpeg image"):
        probe_data_uri(ref)


@pytest.mark.parametrize(
    ("ref", "remote"),
    [("https://cdn.example.com/a.png", True), ("HTTP://example.com/a.png?x=1", True),
     ("http://127.0.0.1:8000/a.png", True), ("ftp://example.com/a.png", False),
     ("http:///a.png", False), ("images/a.png", False), ("/abs/a.png", False),
     ("data:image/png;base64,aGk=", False), ("http://[::1", False), ("", False)],
)
def test_is_remote(ref: str, remote: bool) -> None:
    assert is_remote(ref) is remote


@pytest.mark.parametrize(
    ("ref", "inline"),
    [("data:image/png;base64,aGk=", True), ("DATA:image/png;base64,aGk=", True),
     ("https://x/a.png", False), ("data.png", False), ("", False)],
)
def test_is_data_uri(ref: str, inline: bool) -> None:
    assert is_data_uri(ref) is inline


# --- past the header: complete files, no bombs ------------------------------------------------


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"])
def test_pngs_of_every_colour_type_inflate_to_their_size(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"{mode.replace(';', '')}.png"
    if mode == "I;16":
        Image.new("I;16", (641, 479), 300).save(path)
    else:
        Image.effect_noise((641, 479), 64).convert(mode).save(path)

    assert probe_image(path).size_bytes == path.stat().st_size


def test_an_interlaced_png_is_counted_pass_by_pass() -> None:
    width, height = 641, 479
    raw = png_raw_size(width, height, 1, 0, interlaced=True)
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 1)
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * raw)) + chunk(b"IEND", b""))

    assert probe_data_uri(data_uri(data, "png")).width == width


def test_a_png_cut_short_is_refused(tmp_path: Path) -> None:
    whole = image_bytes(640, 480)
    path = tmp_path / "cut.png"
    path.write_bytes(whole[:60])

    assert problem(path) == "png data is truncated (a chunk is cut short)"


def test_a_png_whose_pixels_are_cut_is_refused() -> None:
    row = b"\x00" * (1 + 640 // 8)
    cut = png_header(640, 480, zlib.compress(row * 100))  # 100 of its 480 rows

    with pytest.raises(ImageProblem, match="fewer pixels than its size"):
        probe_data_uri(data_uri(cut, "png"))


def test_a_zlib_bomb_is_refused_once_it_passes_the_size(tmp_path: Path) -> None:
    bomb = zlib.compressobj(9)
    pixels = b"".join(bomb.compress(b"\x00" * (1 << 20)) for _ in range(1024)) + bomb.flush()
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(640, 480, pixels))  # 1 GiB of zeros for a 38 KB image

    assert problem(path) == "png pixel data inflates past what its size needs " \
        "(a decompression bomb)"
    assert path.stat().st_size < 2_000_000


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_bytes_after_the_end_are_refused(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"tail.{fmt}"
    path.write_bytes(image_bytes(640, 480, fmt) + b"secret appended after the image")

    assert "after its end" in problem(path)


def test_a_jpeg_without_its_end_marker_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    whole = image_bytes(640, 480, "jpeg")
    path.write_bytes(whole[: len(whole) * 2 // 3])

    assert "jpeg data is truncated" in problem(path)


@pytest.mark.parametrize("fmt", ["webp", "gif", "bmp", "tiff"])
def test_other_formats_cut_short_are_refused(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"cut.{fmt}"
    noisy = io.BytesIO()
    Image.effect_noise((640, 480), 64).convert("RGB").save(noisy, PILLOW_NAME[fmt])
    path.write_bytes(noisy.getvalue()[: len(noisy.getvalue()) * 2 // 3])

    assert problem(path) in (f"{fmt} data is truncated or corrupt",
                             f"{fmt} header is truncated or corrupt")


def test_a_data_uri_gets_the_same_checks_as_a_file() -> None:
    cut = image_bytes(640, 480)[:-12]  # no IEND
    with pytest.raises(ImageProblem, match="no IEND chunk"):
        probe_data_uri(data_uri(cut, "png"))
