"""The manifest reader on hostile shapes: a huge line, a wide header, deep nesting.

Each is refused as one clear line (file, line, what), with memory and time bounded by the
limits, not by the file."""

from __future__ import annotations

import json
import resource
from pathlib import Path

import pytest

from genbatch.errors import ManifestError
from genbatch.producer.manifest import MAX_JSON_DEPTH, MAX_LINE_BYTES, Row, iter_rows

GIB = 1 << 30


def rows(path: Path) -> list[Row]:
    return list(iter_rows(path))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_1_gib_line_is_refused_at_the_limit_without_being_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.jsonl"
    with path.open("wb") as f:
        f.write(b'{"image": "https://example.com/a.png"}\n{"prompt": "')
        f.truncate(GIB)  # sparse: 1 GiB of NULs with no newline, no disk used
    before = peak_rss_mb()

    with pytest.raises(ManifestError) as caught:
        rows(path)

    assert str(caught.value) == f"{path}:2: line is longer than 1,000,000 bytes"
    assert peak_rss_mb() - before < 200  # read up to the limit, not the gigabyte


def test_a_csv_row_spread_over_many_lines_is_bounded_like_one_line(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    cell = ("x" * 900 + "\n") * (MAX_LINE_BYTES // 900 + 10)
    path.write_text('image,prompt\nhttps://example.com/a.png,"' + cell + '"\n')

    with pytest.raises(ManifestError, match="row is longer than 1,000,000 bytes"):
        rows(path)


def test_a_wide_header_is_checked_in_linear_time(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    columns = ["image", *(f"{n:x}" for n in range(165_000)), "image"]
    path.write_text(",".join(columns)[: MAX_LINE_BYTES - 1] + ",image\n")

    with pytest.raises(ManifestError) as caught:
        rows(path)

    assert (caught.value.line, caught.value.field) == (1, "image")
    assert "column appears twice" in str(caught.value)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 2_000, 150_000])
@pytest.mark.parametrize("brackets", ["[]", "{}"])
def test_deep_nesting_is_a_problem_of_that_row(tmp_path: Path, depth: int,
                                               brackets: str) -> None:
    opening, closing = brackets[0], brackets[1]
    key = '"k":' if opening == "{" else ""
    nested = (opening + key) * (depth - 1) + "1" + closing * (depth - 1)  # + the row: depth
    path = tmp_path / "deep.jsonl"
    path.write_text(json.dumps({"image": "https://example.com/a.png"}) + "\n"
                    + '{"prompt": ' + nested + "}\n"
                    + json.dumps({"image": "https://example.com/b.png"}) + "\n")

    found = rows(path)

    assert [r.line for r in found] == [1, 2, 3]
    assert found[0].problem is None and found[2].problem is None
    assert str(found[1].problem) == f"{path}:2: JSON nested deeper than {MAX_JSON_DEPTH} levels"


def test_nesting_up_to_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl"
    value: object = 1
    for _ in range(MAX_JSON_DEPTH - 1):
        value = [value]
    path.write_text(json.dumps({"image": "https://example.com/a.png", "prompt": value}) + "\n")

    (row,) = rows(path)

    assert row.problem is None


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_manifest_bigger_than_the_line_limit_is_read_whole(tmp_path: Path, fmt: str) -> None:
    """The limit bounds one line (one row), not the file: 3 MB of short rows read fine."""
    n = 3 * MAX_LINE_BYTES // 100
    path = tmp_path / f"big.{fmt}"
    with path.open("w", encoding="utf-8") as fh:
        if fmt == "csv":
            fh.write("custom_id,prompt,image\n")
        for i in range(n):
            fh.write(f"c{i},{'p' * 60},https://example.com/a.png\n" if fmt == "csv" else
                     json.dumps({"custom_id": f"c{i}", "prompt": "p" * 40,
                                 "image": "https://example.com/a.png"}) + "\n")
    assert path.stat().st_size > 2 * MAX_LINE_BYTES
    read = rows(path)
    assert len(read) == n and all(r.problem is None for r in read)
