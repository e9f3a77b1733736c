"""Variants and prompt templates: a row's lists expand to one item per combination, with ids
that name the values and stay the same for the same manifest; templates fill from the row;
every mistake is one line naming the file, the line (the variant) and the field."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genbatch import Client, providers
from genbatch.cli import app
from genbatch.config import Settings
from genbatch.errors import ManifestError, ManifestRejected
from genbatch.models import GenerationRequest, ItemState
from genbatch.producer.ingest import IngestResult, ingest_manifest
from genbatch.producer.manifest import Row, iter_rows
from genbatch.producer.records import item_record
from genbatch.producer.resume import resume_manifest
from genbatch.producer.validate import RowValidator, ValidRow
from genbatch.producer.variants import Expansion, VariantLimits
from genbatch.storage import open_storage, safe_name
from genbatch.store import JobStore, item_id
from genbatch.worker.finalize import error_row, result_row, write_outputs

MODEL = "seedance-v1.5-pro-i2v"
RATIOS = ["9:16", "1:1", "16:9"]
SEEDS = [1, 2]


def write_jsonl(folder: Path, rows: list[dict[str, object]], name: str = "m.jsonl") -> Path:
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def product_row(custom_id: str, **extra: object) -> dict[str, object]:
    return {"custom_id": custom_id, "provider": "novita", "image": "images/sneaker.jpg",
            "prompt": "Slow dolly-in on a {product}", "vars": {"product": custom_id},
            "variants": {"ratio": RATIOS, "seed": SEEDS}, **extra}


def expanded(path: Path, limits: VariantLimits | None = None) -> list[Row]:
    return list(Expansion(iter_rows(path), str(path), limits))


def dry_run(path: Path, **kwargs: object) -> IngestResult:
    return ingest_manifest(path, store=None, storage=None, provider="novita", model=MODEL,
                           dry_run=True, **kwargs)  # type: ignore[arg-type]


def validated(path: Path) -> list[ValidRow | list[ManifestError]]:
    validator = RowValidator(path, "novita", MODEL)
    try:
        return [validator.validate(row) for row in expanded(path)]
    finally:
        validator.close()


def expected_ids(custom_id: str) -> list[str]:
    return [f"{custom_id}~{r.replace(':', 'x')}-s{s}" for r, s in itertools.product(RATIOS,
                                                                                   SEEDS)]


# -- expansion and ids ---------------------------------------------------------------------
def test_a_row_expands_to_the_product_of_its_lists_with_ids_naming_the_values(
        folder: Path) -> None:
    path = write_jsonl(folder, [product_row("ad-001"), {"custom_id": "plain",
                                                        "image": "images/watch.jpg"}])
    rows = expanded(path)
    assert [r.data["custom_id"] for r in rows] == [*expected_ids("ad-001"), "plain"]
    assert [r.data.get("variant") for r in rows[:2]] == [{"ratio": "9:16", "seed": 1},
                                                         {"ratio": "9:16", "seed": 2}]
    assert {r.line for r in rows[:6]} == {1} and rows[6].line == 2
    assert all("variants" not in r.data for r in rows)
    assert [r.data["custom_id"] for r in expanded(path)] == [r.data["custom_id"] for r in rows]


def test_csv_and_jsonl_of_the_same_rows_give_the_same_ids(folder: Path) -> None:
    jsonl = write_jsonl(folder, [{"custom_id": "ad", "image": "images/sneaker.jpg",
                                  "variants": {"seed": SEEDS, "ratio": RATIOS}}])
    csv = folder / "m.csv"
    csv.write_text("image,variants.ratio,custom_id,variants.seed\nimages/sneaker.jpg,"
                   + "|".join(RATIOS) + ",ad," + " | ".join(map(str, SEEDS)) + "\n"
                   + "images/watch.jpg,1:1,,\n")
    from_csv = [r.data["custom_id"] for r in expanded(csv)]
    assert from_csv[:-1] == [r.data["custom_id"] for r in expanded(jsonl)]
    assert from_csv == [*expected_ids("ad"), "line-3~1x1"]  # no custom_id: line-<n>


def test_an_empty_csv_cell_or_object_leaves_the_row_plain(folder: Path) -> None:
    path = folder / "m.csv"
    path.write_text("custom_id,image,ratio,variants.ratio\n"
                    "a,images/sneaker.jpg,,9:16|16:9\nb,images/sneaker.jpg,1:1,\n")
    assert [(r.data["custom_id"], r.data.get("ratio")) for r in expanded(path)] == [
        ("a~9x16", ""), ("a~16x9", ""), ("b", "1:1")]
    jsonl = write_jsonl(folder, [{"custom_id": "c", "image": "i.png", "variants": {}}])
    assert [r.data for r in expanded(jsonl)] == [
        {"custom_id": "c", "image": str(folder / "i.png")}]


@pytest.mark.parametrize(("lists", "suffixes"), [
    ({"duration": [5, 10]}, ["5s", "10s"]),
    ({"generate_audio": [True, "false"]}, ["audio", "mute"]),
    ({"seed": [-1, 1]}, ["sm1", "s1"]),
    ({"model": ["seedance-v1.5-pro-i2v", "Seedance V1 Lite"]},
     ["seedance-v1.5-pro-i2v", "seedance-v1-lite"]),
    ({"prompt": ["a cat", "a dog"]}, ["prompt1", "prompt2"]),
    ({"model": ["a/b", "a b"]}, ["model1", "model2"]),  # read alike: named by position
    ({"resolution": ["720p"], "fps": [24], "service_tier": ["flex"]}, ["720p-24fps-flex"]),
])
def test_suffixes_are_short_readable_and_unique_within_the_row(
        folder: Path, lists: dict[str, list[object]], suffixes: list[str]) -> None:
    path = write_jsonl(folder, [{"custom_id": "x", "image": "i.png", "variants": lists}])
    ids = [r.data["custom_id"] for r in expanded(path)]
    assert ids == [f"x~{s}" for s in suffixes]
    assert all(safe_name(i) == i for i in ids)  # the video's file name is the id itself


# -- mistakes ------------------------------------------------------------------------------
@pytest.mark.parametrize(("variants", "field", "reason"), [
    (["9:16"], "variants", "must be an object mapping fields to lists"),
    ({"ration": ["9:16"]}, "variants.ration", "not a field that can vary"),
    ({"image": ["a.png"]}, "variants.image", "not a field that can vary"),
    ({"seed": []}, "variants.seed", "must be a non-empty list"),
    ({"seed": [1, "1"]}, "variants.seed", "'1' is listed twice"),
    ({"seed": [{"a": 1}]}, "variants.seed", "is not a text, number or true/false value"),
    ({"ratio": ["1:1"], "seed": [1]}, "ratio", "set both in the row and in variants.ratio"),
])
def test_a_bad_variants_object_is_one_problem_naming_line_and_field(
        folder: Path, variants: object, field: str, reason: str) -> None:
    path = write_jsonl(folder, [{"image": "images/sneaker.jpg"},
                                {"image": "images/sneaker.jpg", "ratio": "16:9",
                                 "variants": variants}])
    [_, row] = expanded(path)
    assert row.problem is not None
    assert (row.problem.line, row.problem.field) == (2, field)
    assert reason in row.problem.reason


def test_too_many_variants_in_a_row_is_one_error_before_any_is_made(folder: Path) -> None:
    path = write_jsonl(folder, [product_row("a"), product_row("b", variants={
        "seed": list(range(50)), "ratio": RATIOS})])
    rows = expanded(path, VariantLimits(per_row=6))
    assert len(rows) == 7 and rows[-1].problem is not None
    assert str(rows[-1].problem) == (
        f"{path}:2: variants: 3 ratio x 50 seed make 150 variants; at most 6 per row "
        "(GENBATCH_MAX_VARIANTS_PER_ROW)")


def test_the_batch_limit_counts_variants_and_names_the_line_that_passes_it(
        folder: Path) -> None:
    path = write_jsonl(folder, [product_row("a"), product_row("b")])
    assert len(expanded(path, VariantLimits(per_batch=12))) == 12
    with pytest.raises(ManifestError) as caught:
        expanded(path, VariantLimits(per_batch=11))
    assert str(caught.value).startswith(
        f"{path}:2: the manifest expands to more than 11 items")


def test_a_misspelt_variants_column_is_refused_at_the_header(folder: Path) -> None:
    path = folder / "m.csv"
    path.write_text("image,variants.ration\nimages/sneaker.jpg,9:16\n")
    with pytest.raises(ManifestError) as caught:
        expanded(path)
    assert (caught.value.line, caught.value.field) == (1, "variants.ration")


def test_a_variant_breaking_its_models_rules_names_row_variant_and_field(
        folder: Path) -> None:
    path = write_jsonl(folder, [{"custom_id": "ad", "image": "images/sneaker.jpg",
                                 "prompt": "p", "variants": {"duration": [5, 30]}}])
    good, bad = validated(path)
    assert isinstance(good, ValidRow) and good.request.duration == 5
    assert isinstance(bad, list) and [e.field for e in bad] == ["duration"]
    assert str(bad[0]).startswith(f"{path}:1: variant ad~30s: duration: ")
    result = dry_run(path, skip_invalid=True)
    assert (result.source_rows, result.rows, result.valid, result.invalid) == (1, 2, 1, 1)


def test_a_variant_id_that_repeats_another_rows_custom_id_is_a_duplicate(
        folder: Path, store: JobStore) -> None:
    path = write_jsonl(folder, [{"custom_id": "ad", "image": "images/sneaker.jpg",
                                 "prompt": "p", "variants": {"ratio": ["9:16", "1:1"]}},
                                {"custom_id": "ad~1x1", "image": "images/watch.jpg",
                                 "prompt": "p"}])
    for run in (dry_run, lambda p: ingest_manifest(
            p, store=store, storage=open_storage(str(folder / "out")), provider="novita",
            model=MODEL)):
        with pytest.raises(ManifestRejected) as caught:
            run(path)
        [problem] = caught.value.errors
        assert (problem.line, problem.field) == (2, "custom_id")
        assert "duplicate custom_id 'ad~1x1' (first on line 1)" in problem.reason
    assert store.batches.recent() == []


# -- templates -----------------------------------------------------------------------------
def test_a_template_fills_from_template_values_and_the_variants_fields(folder: Path) -> None:
    path = write_jsonl(folder, [product_row(
        "ad", prompt='{product} in {ratio}, seed {seed} ({custom_id}); {{literal}} {"a": 1}')])
    first = validated(path)[0]
    assert isinstance(first, ValidRow)
    assert first.request.prompt == 'ad in 9:16, seed 1 (ad~9x16-s1); {literal} {"a": 1}'
    assert first.row["prompt"].startswith("{product}")  # the row keeps its template


def test_a_template_mistake_is_one_problem_of_the_row_not_one_per_variant(
        folder: Path) -> None:
    path = write_jsonl(folder, [product_row("ad", prompt="A {prodcut} at {ratio}")])
    [row] = expanded(path)
    assert row.problem is not None and (row.problem.line, row.problem.field) == (1, "prompt")
    assert str(row.problem).startswith(f"{path}:1: prompt: {{prodcut}} names no value")
    varied = write_jsonl(folder, [product_row("ad", prompt=None, variants={
        "prompt": ["A {product}", "A {prodcut}"]})], "varied.jsonl")
    outcomes = validated(varied)  # the prompt varies: each variant's own problem
    assert isinstance(outcomes[0], ValidRow) and isinstance(outcomes[1], list)
    assert str(outcomes[1][0]).startswith(f"{varied}:1: variant ad~prompt2: prompt: ")


def test_csv_template_values_are_vars_columns(folder: Path) -> None:
    path = folder / "m.csv"
    path.write_text("custom_id,image,prompt,vars.product,duration\n"
                    "a,images/sneaker.jpg,A {vars.product} for {duration} s,red shoe,5\n")
    [row] = validated(path)
    assert isinstance(row, ValidRow) and row.request.prompt == "A red shoe for 5 s"
    assert row.row["vars"] == {"product": "red shoe"}


@pytest.mark.parametrize(("row", "field", "reason"), [
    ({"prompt": "A {prodcut}", "vars": {"product": "x"}}, "prompt",
     "{prodcut} names no value of this row: add a vars.prodcut column"),
    ({"prompt": "A {seed}"}, "prompt", "{seed} names a field this row leaves empty"),
    ({"prompt": "A", "vars": {"ratio": "9:16"}}, "vars.ratio", "is a field of the row"),
    ({"prompt": "A", "vars": ["x"]}, "vars", "must be an object of template values"),
])
def test_template_mistakes_name_the_field(folder: Path, row: dict[str, object], field: str,
                                          reason: str) -> None:
    path = write_jsonl(folder, [{"image": "images/sneaker.jpg", **row}])
    [problems] = validated(path)
    assert isinstance(problems, list)
    assert [(e.line, e.field) for e in problems] == [(1, field)]
    assert reason in problems[0].reason


# -- what the items hold -------------------------------------------------------------------
def test_items_hold_their_variant_and_results_show_it_typed(folder: Path,
                                                            store: JobStore) -> None:
    path = folder / "m.csv"
    path.write_text("custom_id,provider,prompt,image,variants.ratio,variants.seed\n"
                    "ad,novita,p,images/sneaker.jpg,9:16|1:1,1|2\n")
    result = ingest_manifest(path, store=store, storage=open_storage(str(folder / "out")),
                             provider=None, model=MODEL)
    assert (result.source_rows, result.rows, result.valid) == (1, 4, 4)
    items = [store.items.get(item_id(str(result.batch_id), seq)) for seq in range(1, 5)]
    assert [i["custom_id"] for i in items] == ["ad~9x16-s1", "ad~9x16-s2", "ad~1x1-s1",
                                               "ad~1x1-s2"]
    assert [result_row(i)["variant"] for i in items][1] == {"ratio": "9:16", "seed": 2}
    assert json.loads(items[1]["req"])["seed"] == 2


def test_an_error_row_of_a_variant_resubmits_as_the_same_item(folder: Path) -> None:
    path = write_jsonl(folder, [product_row("ad", prompt="{product} at {ratio}")])
    originals = [v for v in validated(path) if isinstance(v, ValidRow)]
    records = [{**item_record(n, v, "{}"), "state": "failed", "error_code": "x"}
               for n, v in enumerate(originals, 1)]
    again = write_jsonl(folder, [error_row(r) for r in records], "errors.jsonl")
    resubmitted = validated(again)
    assert [r.custom_id for r in resubmitted if isinstance(r, ValidRow)] == \
        [r.custom_id for r in originals]
    assert [r.request for r in resubmitted if isinstance(r, ValidRow)] == \
        [r.request for r in originals]
    assert len(expanded(again)) == len(originals) == 6  # no second expansion


# -- dry run, settings ---------------------------------------------------------------------
def test_a_dry_run_counts_rows_and_variants_and_prices_each_variant(
        folder: Path, tmp_storage: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_jsonl(folder, [product_row("a", variants={"duration": [5, 10],
                                                           "seed": SEEDS}),
                                {"custom_id": "b", "image": "images/watch.jpg", "prompt": "p",
                                 "duration": 5}])
    offline = Client(Settings(redis_url="redis://127.0.0.1:1/0", storage_url=str(tmp_storage)))
    outcome = offline.estimate(path, provider="novita")
    assert (outcome.manifest_rows, outcome.rows, outcome.valid) == (2, 5, 5)
    one = {d: providers.estimate_cost("novita", MODEL, GenerationRequest(image="x", duration=d))
           or 0.0 for d in (5, 10)}
    assert one[5] > 0 and one[10] > one[5]
    assert outcome.est_cost == pytest.approx(2 * one[5] + 2 * one[10] + one[5])

    monkeypatch.setenv("GENBATCH_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("GENBATCH_STORAGE_URL", str(tmp_storage))
    shown = CliRunner().invoke(app, ["submit", str(path), "--provider", "novita", "--dry-run",
                                     "--json"])
    assert shown.exit_code == 0, shown.output
    assert {k: json.loads(shown.stdout)[k] for k in ("manifest_rows", "rows", "valid")} == \
        {"manifest_rows": 2, "rows": 5, "valid": 5}
    text = CliRunner().invoke(app, ["submit", str(path), "--provider", "novita", "--dry-run"])
    assert "2 manifest rows expand to 5 items (variants)" in text.stdout


def test_the_variant_limit_is_a_setting(folder: Path, tmp_storage: Path) -> None:
    path = write_jsonl(folder, [product_row("a")])
    strict = Client(Settings(storage_url=str(tmp_storage), max_variants_per_row=5))
    with pytest.raises(ManifestRejected) as caught:
        strict.estimate(path, provider="novita")
    assert [(e.line, e.field) for e in caught.value.errors] == [(1, "variants")]
    assert "at most 5 per row" in caught.value.errors[0].reason
    small = Client(Settings(storage_url=str(tmp_storage), max_items_per_batch=5))
    with pytest.raises(ManifestError, match=r":1: the manifest expands to more than 5 items"):
        small.estimate(path, provider="novita")


def test_the_example_manifests_make_the_same_twelve_items(tmp_storage: Path) -> None:
    folder = Path(__file__).resolve().parents[1] / "examples" / "variants"
    ids = []
    for name in ("ads.csv", "ads.jsonl"):
        outcome = Client(Settings(storage_url=str(tmp_storage))).estimate(folder / name)
        assert (outcome.manifest_rows, outcome.valid, outcome.invalid) == (2, 12, 0)
        ids.append([r.data["custom_id"] for r in expanded(folder / name)])
    assert ids[0] == ids[1] and ids[0][:2] == ["ad-sneaker~9x16-s1", "ad-sneaker~9x16-s2"]


def test_errors_jsonl_of_variants_resumes_the_same_items(store: JobStore, folder: Path) -> None:
    # Given a batch of one row's four variants, one of which its model refuses (30 s)
    path = write_jsonl(folder, [{"custom_id": "ad", "image": "images/sneaker.jpg",
                                 "prompt": "{product}, {ratio}", "vars": {"product": "shoe"},
                                 "variants": {"ratio": ["9:16", "1:1"], "duration": [5, 30]}}])
    storage = open_storage(str(folder / "out"))
    result = ingest_manifest(path, store=store, storage=storage, provider="novita",
                             model=MODEL, skip_invalid=True)
    batch_id = str(result.batch_id)
    assert (result.valid, result.invalid) == (2, 2)
    store.items.transition(item_id(batch_id, 1), [ItemState.PENDING], ItemState.CANCELLED)
    # When its outputs are written and errors.jsonl is fixed where it lies
    write_outputs(storage, batch_id, store.items.of_batch(batch_id, 4))
    errors = folder / "out" / batch_id / "errors.jsonl"
    rows = [json.loads(x) for x in errors.read_text(encoding="utf-8").splitlines()]
    # (every item not succeeded is there: the pending one too)
    assert [r["custom_id"] for r in rows] == ["ad~9x16-5s", "ad~9x16-30s", "ad~1x1-5s",
                                              "ad~1x1-30s"]
    assert rows[1]["variant"] == {"ratio": "9:16", "duration": 30} and "variants" not in rows[1]
    for row in rows:
        if row["variant"]["duration"] == 30:
            row["variant"]["duration"] = 10
    errors.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    # Then resumed, the ended items are queued again, the pending one kept, nothing added
    _, changes = resume_manifest(errors, batch_id, store=store, storage=storage,
                                 provider="novita", model=MODEL)
    assert changes == {"added": 0, "replaced": 3, "kept": 1}
    fixed = store.items.get(item_id(batch_id, 2))
    assert (fixed["state"], fixed["custom_id"]) == ("pending", "ad~9x16-30s")
    assert json.loads(fixed["req"])["prompt"] == "shoe, 9:16"
    assert result_row(fixed)["variant"] == {"ratio": "9:16", "duration": 10}
