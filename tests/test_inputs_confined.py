"""Local images are confined to the manifest's folder (or allowed input folders): a path that
resolves elsewhere, symlinks included, is refused with one message whether or not it exists."""

from __future__ import annotations

import io
import shutil
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from genbatch.config import Settings
from genbatch.demo import SAMPLES
from genbatch.errors import ManifestRejected
from genbatch.producer.ingest import ingest_manifest
from genbatch.producer.inputs import OUTSIDE_ROOTS
from genbatch.producer.manifest import Row
from genbatch.producer.records import ImageUploader
from genbatch.producer.validate import MAX_CACHED_REFS, RowValidator, ValidRow
from genbatch.storage import open_storage

IMAGE = SAMPLES / "images" / "bottle.png"
MODEL = "seedance-v1.5-pro-i2v"


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """`jobs/` holds the manifest and its image; `private/` holds an image beside it."""
    jobs, private = tmp_path / "jobs", tmp_path / "private"
    jobs.mkdir()
    private.mkdir()
    shutil.copy(IMAGE, jobs / "ok.png")
    shutil.copy(IMAGE, private / "secret.png")
    return jobs, private


def distinct_png(png: bytes, n: int) -> bytes:
    """`png` with a text chunk naming `n` after its header: a distinct file, same pixels."""
    body = b"n\x00" + str(n).encode()
    text = struct.pack(">I", len(body)) + b"tEXt" + body + \
        struct.pack(">I", zlib.crc32(b"tEXt" + body))
    return png[:33] + text + png[33:]


def problems(manifest: Path, images: list[str], **kwargs: object) -> list[str]:
    manifest.write_text("custom_id,image,prompt\n" + "".join(
        f"r{n},{image},p\n" for n, image in enumerate(images)), encoding="utf-8")
    try:
        ingest_manifest(manifest, store=None, storage=None, provider="novita", model=MODEL,
                        dry_run=True, **kwargs)  # type: ignore[arg-type]
    except ManifestRejected as exc:
        return [f"{e.line} {e.field} {e.reason}" for e in exc.errors]
    return []


def test_paths_that_leave_the_manifest_folder_are_refused_alike(
        layout: tuple[Path, Path]) -> None:
    jobs, private = layout
    (jobs / "link.png").symlink_to(private / "secret.png")
    (jobs / "dir").symlink_to(private)
    (jobs / "gone.png").symlink_to(private / "missing.png")
    images = ["../private/secret.png", "../private/missing.png", str(private / "secret.png"),
              str(private / "missing.png"), "link.png", "dir/secret.png", "gone.png",
              "/etc/passwd", "~/x.png", "ok.png"]

    found = problems(jobs / "m.csv", images)

    refused = f"image {OUTSIDE_ROOTS}"
    assert found == [f"{line} {refused}" for line in range(2, 11)]


def test_a_missing_file_inside_the_folder_is_named(layout: tuple[Path, Path]) -> None:
    jobs, _ = layout

    (found,) = problems(jobs / "m.csv", ["nope.png"])

    assert found == f"2 image file not found: {jobs.resolve() / 'nope.png'}"


def test_an_input_root_lets_its_images_in(layout: tuple[Path, Path]) -> None:
    jobs, private = layout
    (jobs / "link.png").symlink_to(private / "secret.png")

    assert problems(jobs / "m.csv", ["../private/secret.png", "link.png"],
                    input_roots=(private,)) == []


def test_input_roots_come_from_the_setting(tmp_path: Path) -> None:
    settings = Settings(input_roots=f"{tmp_path / 'a'}::{tmp_path / 'b'}")

    assert settings.input_root_paths() == (tmp_path / "a", tmp_path / "b")


def test_the_stored_request_reads_the_real_file_not_the_link(
        layout: tuple[Path, Path], tmp_path: Path) -> None:
    jobs, _ = layout
    (jobs / "alias.png").symlink_to(jobs / "ok.png")
    validator = RowValidator(jobs / "m.csv", "novita", MODEL)

    row = validator.validate(Row(2, {"image": str(jobs / "alias.png"), "prompt": "p"}))

    assert isinstance(row, ValidRow) and row.request.image == str((jobs / "ok.png").resolve())
    uploads = ImageUploader(open_storage(str(tmp_path / "out")))
    assert '"image":"stored:inputs/' in uploads.request_json(row.request)


def test_caches_of_image_checks_and_uploads_stay_bounded(layout: tuple[Path, Path],
                                                         tmp_path: Path) -> None:
    jobs, _ = layout
    validator = RowValidator(jobs / "m.csv", "novita", MODEL)
    uploads = ImageUploader(open_storage(str(tmp_path / "out")))
    small = io.BytesIO()
    Image.new("L", (320, 320)).save(small, "PNG")
    base = small.getvalue()
    for n in range(MAX_CACHED_REFS + 10):
        image = jobs / f"i{n}.png"
        image.write_bytes(distinct_png(base, n))
        row = validator.validate(Row(n + 2, {"image": image.name, "prompt": "p"}))
        assert isinstance(row, ValidRow)
        uploads.request_json(row.request)

    assert len(validator._refs) <= MAX_CACHED_REFS
    assert validator._local is not None
    assert len(validator._local._checks) <= MAX_CACHED_REFS
    assert len(uploads.done) <= MAX_CACHED_REFS
