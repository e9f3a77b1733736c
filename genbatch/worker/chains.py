"""Chains on the worker's side: a child waits until its parent ends, then starts on the
parent's last frame, or ends with it.

    parent succeeded ─▶ `chain` task: the last frame (the provider's, BytePlus
        `content.last_frame_url`, else decoded from the stored video with PyAV) is copied
        into object storage (`inputs/<sha256>.png`: provider URLs expire), the child's
        `@parent` image becomes `stored:<key>`, and it is queued ─▶ pending
    parent failed, expired, cancelled, ambiguous or parent_failed ─▶ each waiting child
        (and theirs) ends `parent_failed`; errors.jsonl keeps its row as written
        (`image` = `@parent`), so both rows resubmit together
    `genbatch retry` puts a parent back ─▶ its parent_failed children (and theirs) wait
        again; a child whose frame could not be had (`frame_unavailable`) waits again and
        its succeeded parent's frame is fetched anew
    the batch is cancelled ─▶ waiting children are cancelled (never submitted)

Every move is a compare-and-set from `waiting_parent` (or `parent_failed`), so a repeated
`chain` task or a parent ending twice changes nothing. `steps.finish` calls `arm` before an
item succeeds and `ended` once any item is terminal; nothing here imports `steps` (it
imports this). The `chain` task runs on the download queue: like a download, it fetches
or decodes a file.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from pathlib import Path

import httpx

from genbatch import frames, metrics
from genbatch.errors import GenbatchError
from genbatch.images import STORED_PREFIX, ImageProblem, is_chained, sniff_format
from genbatch.models import NO_VIDEO_STATES, ItemState
from genbatch.producer.chains import CHAIN_FIELDS
from genbatch.records import Item
from genbatch.storage import object_key
from genbatch.store import item_id
from genbatch.worker.dispatch import refill
from genbatch.worker.fetch import open_video, policy_for
from genbatch.worker.runtime import Runtime

log = logging.getLogger(__name__)
WAITING, PARENT_FAILED = ItemState.WAITING, ItemState.PARENT_FAILED
MAX_FRAME_BYTES = 30_000_000  # the providers' input image limit


def arm(rt: Runtime, iid: str, children: list[int]) -> None:
    """Item `iid` is about to succeed: give its waiting `children` (seqs) a timer a lease
    away. The `chain` task that `ended` sends clears it; if that message is lost with a
    worker killed between the two, the scheduler fires it and the children are released all
    the same."""
    due = rt.now() + rt.settings.task_lease_s
    for seq in children:  # only those still waiting (compare-and-set)
        rt.store.items.transition(item_id(iid.rsplit(":", 1)[0], seq), [WAITING], WAITING,
                                  timer=due)


def ended(rt: Runtime, iid: str, state: ItemState, children: list[int]) -> None:
    """Item `iid` just reached the terminal `state`: release or end its `children` (seqs)."""
    if not children:
        return
    item = rt.store.items.get(iid)
    if state is ItemState.SUCCEEDED:
        rt.enqueue("chain", iid)  # the frame may need a download or a decode: a task
    elif state in NO_VIDEO_STATES:
        end_children(rt, item, f"its parent {item.custom_id!r} ended {state.value}")


def end_children(rt: Runtime, parent: Item, why: str) -> int:
    """End `parent`'s waiting children `parent_failed` (theirs too); returns how many."""
    message = (f"{why}: resubmit this row with its parent (its image stays "
               f"@{parent.custom_id}), or `genbatch retry` the batch: a retried parent "
               "brings its children back")
    return sum(_end(rt, _child(rt, parent, seq), PARENT_FAILED, PARENT_FAILED.value, message)
               for seq in parent.children)


def _end(rt: Runtime, child: Item, state: ItemState, code: str, message: str) -> int:
    """A waiting child to terminal `state`; its own children end with it."""
    moved = rt.store.items.transition(child.id, [WAITING], state, timer="-", fields={
        "finished_at": rt.now(), "error_code": code, "error_message": message[:2000]})
    if not moved.applied:
        return 0
    metrics.record_completion(rt.store, child.id, state)
    if moved.open_items == 0:
        rt.enqueue("finalize", child.batch_id)
    if child.children:
        return 1 + end_children(rt, child, f"its parent {child.custom_id!r} ended {state.value}")
    return 1


def _child(rt: Runtime, parent: Item, seq: int) -> Item:
    return rt.store.items.get(item_id(parent.batch_id, seq))


def release_children(rt: Runtime, iid: str) -> str:
    """The `chain` task: a succeeded parent's waiting children start on its last frame.
    Given a waiting child (its timer fired: see `arm`), it acts for the child's parent."""
    parent = rt.store.items.get(iid)
    if parent.state is WAITING:
        return _wake(rt, parent)
    if parent.state is not ItemState.SUCCEEDED:
        return "skipped"
    waiting = [c for c in (_child(rt, parent, s) for s in parent.children)
               if c.state is WAITING]
    if not waiting:
        return "skipped"
    if rt.store.batches.get(parent.batch_id).cancel_requested:
        for child in waiting:
            _end(rt, child, ItemState.CANCELLED, ItemState.CANCELLED.value,
                 "the batch was cancelled before this shot's parent finished")
        return "cancelled"  # the task's outcome
    try:
        ref = last_frame(rt, parent)
    except (GenbatchError, OSError) as exc:  # the video unreadable, storage failing
        for child in waiting:
            _end(rt, child, ItemState.FAILED, "frame_unavailable",
                 f"the last frame of {parent.custom_id!r} could not be had: {exc}; "
                 "`genbatch retry` tries again")
        return "failed"  # the task's outcome
    uri = rt.storage.uri(ref.removeprefix(STORED_PREFIX))
    for child in waiting:
        rt.store.items.transition(child.id, [WAITING], ItemState.PENDING, timer="-", fields={
            "req": started_on(child, ref), "input_frame": uri}, queue="back")
    for provider in dict.fromkeys(c.provider for c in waiting):
        refill(rt, provider)
    return "released"


def _wake(rt: Runtime, child: Item) -> str:
    """A waiting child's timer fired: its parent's end was not acted on (a lost message)."""
    parent = _child(rt, child, child.parent_seq)
    if parent.state is ItemState.SUCCEEDED:
        return release_children(rt, parent.id)
    if parent.state in NO_VIDEO_STATES:
        end_children(rt, parent, f"its parent {parent.custom_id!r} ended {parent.state}")
        return "ended"
    rt.store.items.transition(child.id, [WAITING], WAITING, timer="-")  # re-armed later
    return "waiting"  # the task's outcome


def started_on(child: Item, ref: str) -> str:
    """The child's request (JSON) with its `@parent` images replaced by `ref`."""
    request = child.request
    updates = {name: ref for name in CHAIN_FIELDS if is_chained(getattr(request, name))}
    return request.model_copy(update=updates).model_dump_json(exclude_none=True)


def last_frame(rt: Runtime, parent: Item) -> str:
    """`stored:<key>` of the parent's last frame in object storage, copied there once:
    the provider's own where it gave one, else decoded from the stored video."""
    if parent.last_frame and rt.storage.exists(parent.last_frame.removeprefix(STORED_PREFIX)):
        return parent.last_frame
    png = _provider_frame(rt, parent) or _decoded_frame(rt, parent)
    fmt = sniff_format(png)
    key = f"inputs/{hashlib.sha256(png).hexdigest()}.{fmt}"
    if not rt.storage.exists(key):
        rt.storage.put_bytes(key, png, content_type=f"image/{fmt}")
    ref = STORED_PREFIX + key
    rt.store.items.set_fields({parent.id: {"last_frame": ref}})
    return ref


def _provider_frame(rt: Runtime, parent: Item) -> bytes | None:
    """The provider's last frame (checked like a video URL: allowed hosts only), or None
    when it gave none or it cannot be fetched (then the video is decoded instead)."""
    if not parent.last_frame_url:
        return None
    policy = policy_for(rt.settings, parent.provider)
    try:
        with open_video(rt.downloads, parent.last_frame_url, policy,
                        rt.settings.download_timeout_s) as resp:
            data = bytearray()
            for chunk in resp.iter_bytes():
                data += chunk
                if len(data) > MAX_FRAME_BYTES:
                    raise ImageProblem("the last frame is larger than 30 MB")
        sniff_format(bytes(data[:16]))  # an image, not an error page
        return bytes(data)
    except (GenbatchError, httpx.HTTPError) as exc:
        log.info("last frame of %s from its provider refused (%s): decoding the video",
                 parent.id, exc)
        return None


def _decoded_frame(rt: Runtime, parent: Item) -> bytes:
    """The last picture of the parent's stored video, decoded with PyAV."""
    key = object_key(parent.batch_id, parent.custom_id)
    with tempfile.TemporaryDirectory(prefix="genbatch-frame-") as tmp:
        path = Path(tmp) / "video.mp4"
        with rt.output_storage(parent.batch_id).open_read(key) as src, path.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        return frames.last_frame(path)


def reopen_children(rt: Runtime, parent: Item) -> int:
    """`genbatch retry` put `parent` back: its parent_failed children (and theirs) wait
    for it again. Returns how many."""
    reopened = 0
    todo = [parent]
    while todo:
        item = todo.pop()
        for seq in item.children:
            child = _child(rt, item, seq)
            moved = rt.store.items.transition(child.id, [PARENT_FAILED], WAITING, fields={
                "finished_at": "", "error_code": "", "error_message": ""})
            if moved.applied:
                reopened += 1
                todo.append(child)
    return reopened


def waits_for_frame(item: Item) -> bool:
    """A child that never got its parent's frame (its image still `@parent`)."""
    return bool(item.parent_seq) and any(
        is_chained(getattr(item.request, name)) for name in CHAIN_FIELDS)


def rewait(rt: Runtime, child: Item, fields: dict[str, str]) -> int:
    """Retry of a child that never got its frame: it waits again and, where its parent
    succeeded, the `chain` task fetches the frame anew."""
    moved = rt.store.items.transition(child.id, [child.state] if child.state else [],
                                      WAITING, timer="-", fields=fields)
    if moved.applied:
        rt.enqueue("chain", item_id(child.batch_id, child.parent_seq))
    return int(moved.applied)
