"""Chains: the manifest's links (missing parent, self-reference, loops) and what the worker
does with a child when its parent ends, on a real Redis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genbatch.client.rows import BatchInfo
from genbatch.config import Settings
from genbatch.errors import ManifestRejected
from genbatch.frames import last_frame
from genbatch.models import GenerationRequest, ItemState
from genbatch.producer.chains import ChainGraph
from genbatch.producer.ingest import ingest_manifest
from genbatch.storage import object_key
from genbatch.store import JobStore, item_id
from genbatch.worker import chains
from genbatch.worker.control import cancel_batch, retry_batch
from genbatch.worker.runtime import Runtime
from genbatch.worker.scheduler import Scheduler
from genbatch.worker.steps import finish
from tests.test_producer import ingest, nothing_written, write

HEADER = "custom_id,prompt,image\n"
SAMPLE = Path(__file__).parent.parent / "genbatch" / "simulator" / "assets" / "sample.mp4"


def graph_of(*rows: tuple[str, str]) -> ChainGraph:
    graph = ChainGraph("m.csv")
    for seq, (custom_id, image) in enumerate(rows, start=1):
        graph.see(seq, seq + 1, custom_id, GenerationRequest(image=image))
    return graph


def test_links_may_point_forwards_and_name_the_parent_seq() -> None:
    graph = graph_of(("c", "@b"), ("a", "x.png"), ("b", "@a"), ("d", "@a"))
    assert graph.resolve() == []
    assert graph.links() == {1: 3, 3: 2, 4: 2}


def test_a_missing_parent_a_self_reference_and_a_loop_are_one_line_each() -> None:
    graph = graph_of(("a", "x.png"), ("b", "@zz"), ("c", "@c"), ("d", "@f"), ("e", "@d"),
                     ("f", "@e"), ("g", "@d"), ("h", "@"))
    problems = {e.line: str(e) for e in graph.resolve()}
    assert problems[3] == ("m.csv:3: image: @zz: no row of this manifest has custom_id 'zz' "
                           "(a parent must be in the same manifest)")
    assert problems[4] == "m.csv:4: image: @c: a row cannot chain on itself"
    for line in (5, 6, 7):  # every row of the loop, each on its own line
        assert "the chain loops back on itself: " in problems[line]
        assert {"d", "e", "f"} <= set(problems[line].split(": ")[-1].split(" → "))
    assert "@ must be followed by the custom_id" in problems[9]
    assert 8 not in problems  # g hangs off the loop; it is not in it
    assert graph.links() == {7: 4}


def test_a_row_chains_on_one_parent_only() -> None:
    graph = ChainGraph("m.csv")
    graph.see(1, 2, "a", GenerationRequest(image="x.png"))
    graph.see(2, 3, "b", GenerationRequest(image="y.png"))
    graph.see(3, 4, "c", GenerationRequest(image="@a", last_image="@b"))
    [problem] = graph.resolve()
    assert (problem.line, problem.field) == (4, "last_image")


def test_a_broken_link_refuses_the_manifest_and_writes_nothing(store: JobStore,
                                                               folder: Path) -> None:
    path = write(folder, "m.csv", HEADER + "a,p,images/sneaker.jpg\nb,p,@a\nc,p,@nope\n")
    with pytest.raises(ManifestRejected) as refused:
        ingest(store, path)
    assert [(e.line, e.field) for e in refused.value.errors] == [(4, "image")]
    assert nothing_written(store)


def test_chained_items_wait_with_their_links(store: JobStore, folder: Path) -> None:
    path = write(folder, "m.csv", HEADER + "b,p,@a\na,p,images/sneaker.jpg\nc,p,@b\n")
    result = ingest(store, path)
    bid = str(result.batch_id)
    batch = store.batches.get(bid)
    assert (batch["pending"], batch["waiting_parent"], result.chained) == ("1", "2", 2)
    b, a, c = (store.items.get(item_id(bid, s)) for s in (1, 2, 3))
    assert (a.state, b.state, c.state) == (ItemState.PENDING, ItemState.WAITING,
                                           ItemState.WAITING)
    assert (a.children, b.children, b.parent, b.parent_seq, c.parent_seq) == ([1], [3], "a",
                                                                              2, 1)
    assert json.loads(b["req"])["image"] == "@a"  # no file to copy: the frame comes later
    assert store.debug.keys("pending", "*")  # only the root is queued


def test_skipped_bad_links_fail_and_end_their_descendants(store: JobStore,
                                                          folder: Path) -> None:
    path = write(folder, "m.csv", HEADER + "a,p,images/sneaker.jpg\nb,p,@zz\nc,p,@b\n"
                 "d,p,@c\ne,p,images/missing.png\nf,p,@e\n")
    bid = str(ingest(store, path, skip_invalid=True).batch_id)
    states = {i.custom_id: (i.state, i.error_code) for i in store.items.of_batch(bid, 6)}
    assert states == {
        "a": (ItemState.PENDING, ""), "b": (ItemState.FAILED, "invalid_row"),
        "c": (ItemState.PARENT_FAILED, "parent_failed"),
        "d": (ItemState.PARENT_FAILED, "parent_failed"),
        "e": (ItemState.FAILED, "invalid_row"),
        "f": (ItemState.PARENT_FAILED, "parent_failed")}
    batch = store.batches.get(bid)
    assert (batch["waiting_parent"], batch["parent_failed"]) == ("0", "3")
    info = BatchInfo.of(batch)  # `genbatch status --json`, progress: every ended item
    assert (info.parent_failed, info.done, info.total) == (3, 5, 6)


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def __call__(self, kind: str, ident: str) -> None:
        self.sent.append((kind, ident))


def runtime(redis_url: str, tmp_path: Path, sent: Recorder) -> Runtime:
    """A runtime whose messages are recorded, not sent; nothing dispatches on its own."""
    return Runtime(Settings(redis_url=redis_url, storage_url=str(tmp_path / "storage"),
                            dispatch_on_free=False), enqueue=sent)


def test_a_parent_without_a_video_ends_every_descendant_and_retry_brings_them_back(
        store: JobStore, folder: Path, redis_url: str) -> None:
    path = write(folder, "m.csv", HEADER + "a,p,images/sneaker.jpg\nb,p,@a\nc,p,@b\n")
    bid = str(ingest(store, path).batch_id)
    sent = Recorder()
    rt = runtime(redis_url, folder, sent)
    moved = store.items.transition(item_id(bid, 1), [ItemState.PENDING], ItemState.EXPIRED,
                                   timer="-")
    assert moved.applied
    chains.ended(rt, item_id(bid, 1), ItemState.EXPIRED, store.items.children(item_id(bid, 1)))
    b, c = (store.items.get(item_id(bid, s)) for s in (2, 3))
    assert (b.state, c.state) == (ItemState.PARENT_FAILED, ItemState.PARENT_FAILED)
    assert "its parent 'a' ended expired" in b.error_message
    assert "its parent 'b' ended parent_failed" in c.error_message
    assert ("finalize", bid) in sent.sent  # the last open item ended
    chains.ended(rt, item_id(bid, 1), ItemState.EXPIRED,  # told twice: nothing more
                 store.items.children(item_id(bid, 1)))
    assert store.batches.get(bid)["parent_failed"] == "2"

    report = retry_batch(rt, bid, (ItemState.EXPIRED,))

    assert (report.requeued, report.chained) == (1, 2)
    states = [store.items.get(item_id(bid, s)).state for s in (1, 2, 3)]
    assert states == [ItemState.PENDING, ItemState.WAITING, ItemState.WAITING]
    batch = store.batches.get(bid)
    assert (batch["pending"], batch["waiting_parent"], batch["parent_failed"]) == ("1", "2",
                                                                                  "0")


def test_cancel_ends_shots_still_waiting_and_a_later_parent_releases_none(
        store: JobStore, folder: Path, redis_url: str) -> None:
    path = write(folder, "m.csv", HEADER + "a,p,images/sneaker.jpg\nb,p,@a\n")
    bid = str(ingest(store, path).batch_id)
    sent = Recorder()
    rt = runtime(redis_url, folder, sent)
    parent = item_id(bid, 1)
    store.items.transition(parent, [ItemState.PENDING], ItemState.SUBMITTED)  # running

    report = cancel_batch(rt, bid)

    assert (report.cancelled, report.finishing) == (1, 1)
    child = store.items.get(item_id(bid, 2))
    assert child.state is ItemState.CANCELLED
    store.items.transition(parent, [ItemState.SUBMITTED], ItemState.SUCCEEDED)
    chains.ended(rt, parent, ItemState.SUCCEEDED, store.items.children(parent))
    assert ("chain", parent) in sent.sent
    assert chains.release_children(rt, parent) == "skipped"  # nothing waits any more
    assert store.items.get(item_id(bid, 2)).state is ItemState.CANCELLED


def test_a_cancelled_batch_ends_the_children_of_its_cancelled_roots_parent_failed(
        store: JobStore, folder: Path, redis_url: str) -> None:
    path = write(folder, "m.csv", HEADER + "a,p,images/sneaker.jpg\nb,p,@a\n")
    bid = str(ingest(store, path).batch_id)
    rt = runtime(redis_url, folder, Recorder())
    assert chains.release_children(rt, item_id(bid, 1)) == "skipped"  # not succeeded yet

    assert cancel_batch(rt, bid).cancelled == 1  # the root; its child ends with it

    child = store.items.get(item_id(bid, 2))
    assert child.state is ItemState.PARENT_FAILED
    assert "its parent 'a' ended cancelled" in child.error_message


def test_a_lost_chain_message_is_made_good_by_the_childs_timer(
        store: JobStore, folder: Path, redis_url: str) -> None:
    path = write(folder, "m.csv", HEADER + "a,p,images/sneaker.jpg\nb,p,@a\n")
    bid = str(ingest(store, path).batch_id)
    lost = Recorder()
    rt = runtime(redis_url, folder, lost)
    parent, child = item_id(bid, 1), item_id(bid, 2)
    rt.output_storage(bid).put_bytes(object_key(bid, "a"), SAMPLE.read_bytes(), "video/mp4")
    store.items.transition(parent, [ItemState.PENDING], ItemState.DOWNLOADING)

    assert finish(rt, parent, [ItemState.DOWNLOADING], ItemState.SUCCEEDED, "", "") == \
        ItemState.SUCCEEDED
    assert ("chain", parent) in lost.sent  # ... and lost with the worker that sent it
    armed = store.debug.timer(child)
    assert armed is not None and armed > rt.now()
    store.items.set_timer(child, rt.now() - 1)  # a task lease later
    fired = Recorder()
    Scheduler(runtime(redis_url, folder, fired)).fire_timers()
    assert fired.sent == [("chain", child)]

    assert chains.release_children(rt, child) == "released"

    released = store.items.get(child)
    assert released.state is ItemState.PENDING and store.debug.timer(child) is None
    frame = json.loads(released["req"])["image"]
    assert frame.startswith("stored:inputs/") and frame.endswith(".png")
    stored = rt.storage.get_bytes(frame.removeprefix("stored:"))
    assert stored == last_frame(SAMPLE)  # decoded from the parent's stored video
    assert released.input_frame == rt.storage.uri(frame.removeprefix("stored:"))
    assert chains.release_children(rt, parent) == "skipped"  # said twice: nothing more


def test_the_documented_three_shot_manifest_is_valid(folder: Path) -> None:
    text = (Path(__file__).parent.parent / "docs" / "manifest.md").read_text(encoding="utf-8")
    section = text.split("\n## Chains (multi-shot)\n", 1)[1]
    example = section.split("```json\n", 1)[1].split("```", 1)[0]
    path = write(folder, "ad.jsonl", example)
    result = ingest_manifest(path, store=None, storage=None, provider=None, model=None,
                             dry_run=True)
    assert (result.valid, result.invalid, result.chained) == (3, 0, 2)
    assert result.errors == []
