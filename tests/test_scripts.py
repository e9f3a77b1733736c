"""The job store's Lua scripts: files in genbatch/store/lua/, one loader, item states taken
from genbatch/models.py (never copied by hand into the Lua)."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import redis

import genbatch.store
from genbatch.errors import GenbatchError
from genbatch.models import (
    BATCH_COUNTERS,
    IN_FLIGHT_STATES,
    OPEN_COUNTERS,
    STATE_COUNTER,
    TERMINAL_STATES,
    BatchStatus,
    ItemState,
)
from genbatch.store import JobStore, item_id, scripts
from tests.dispatching import claimed, dispatch_items

STORE = Path(genbatch.store.__file__).parent
STATES = {s.value for s in ItemState}
STATUSES = {b.value for b in BatchStatus}


def code_of(text: str) -> str:
    """A Lua file without its comments (`--` to the end of the line, outside strings: no
    string in our scripts holds `--`)."""
    return "\n".join(re.sub(r"--.*", "", line) for line in text.splitlines())


def header_of(text: str) -> str:
    """The comment block a file starts with."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        lines.append(line)
    return "\n".join(lines)


def test_generated_state_tables_equal_the_models(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    # cjson encodes a Lua set ({x = true}) as an object and OPEN (a list) as an array.
    dump = ("return cjson.encode({S = S, COUNTER = COUNTER, INFLIGHT = INFLIGHT, "
            "TERMINAL = TERMINAL, OPEN = OPEN})")
    got = json.loads(str(r.eval(scripts.states_lua() + dump, 0)))
    r.close()
    assert got["S"] == {s.value: s.value for s in ItemState}
    assert got["COUNTER"] == {s.value: c for s, c in STATE_COUNTER.items()}
    assert set(got["INFLIGHT"]) == {s.value for s in IN_FLIGHT_STATES}
    assert set(got["TERMINAL"]) == {s.value for s in TERMINAL_STATES}
    assert got["OPEN"] == list(OPEN_COUNTERS)


def test_the_models_counters() -> None:
    assert BATCH_COUNTERS == ("total", "waiting_parent", "pending", "in_flight", "downloading",
                              "succeeded", "failed", "expired", "cancelled", "ambiguous",
                              "parent_failed")
    assert OPEN_COUNTERS == ("waiting_parent", "pending", "in_flight", "downloading")
    assert set(STATE_COUNTER) == set(ItemState)
    assert set(STATE_COUNTER.values()) == set(BATCH_COUNTERS) - {"total"}


def test_every_file_documents_keys_argv_and_return() -> None:
    assert scripts.names()
    for name in scripts.names():
        header = header_of(scripts.source(name))
        for part in ("-- KEYS:", "-- ARGV:", "-- Returns:"):
            assert part in header, f"{name}.lua: its header comment has no {part!r}"


def load_calls() -> set[str]:
    """Every name passed to `load("...")` / `scripts.load("...")` in genbatch/store."""
    found = set()
    for path in STORE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            func = node.func if isinstance(node, ast.Call) else None
            if (isinstance(func, ast.Name) and func.id == "load") or (
                    isinstance(func, ast.Attribute) and func.attr == "load"
                    and isinstance(func.value, ast.Name) and func.value.id == "scripts"):
                assert isinstance(node, ast.Call)
                arg = node.args[0]
                assert isinstance(arg, ast.Constant) and isinstance(arg.value, str), path
                found.add(arg.value)
    return found


def test_every_file_is_loaded_and_every_load_has_a_file() -> None:
    loaded = load_calls()
    files = set(scripts.names())
    assert loaded <= files
    reached, todo = set(), list(loaded)
    while todo:  # what the loaded scripts include, and their includes in turn
        name = todo.pop()
        if name not in reached and name != scripts.STATES:
            reached.add(name)
            todo += scripts.includes(scripts.source(name))
    assert reached == files, f"nobody loads or includes {files - reached}"
    assert {p.stem for p in (STORE / "lua").iterdir()} == files  # nothing but .lua there


def test_includes_are_prepended_once_each() -> None:
    text = scripts.load("claim_due_limited")
    assert text.startswith(scripts.states_lua())
    assert text.count(scripts.source("window")) == 1
    assert text.endswith(scripts.source("claim_due_limited"))
    transition = scripts.load("transition")  # common includes states: not twice
    assert transition.count("local S = ") == 1
    assert scripts.includes("-- include: states, window\n-- KEYS: x") == ["states", "window"]
    assert scripts.includes("-- KEYS: x") == []


def test_no_item_state_is_spelled_out_in_the_lua() -> None:
    """A script names a state as S.<state> (generated from ItemState), never as a string;
    every S.<name> is a real state."""
    for name in scripts.names():
        code = code_of(scripts.source(name))
        # error codes are not states, even where one shares a state's name
        code = re.sub(r"'error_code',\s*'[^']*'", "", code)
        spelled = set(re.findall(r"'([^']*)'", code)) & (STATES | STATUSES)
        assert not spelled, f"{name}.lua spells out {spelled}: use S.<state> / B.<status>"
        for ref in re.findall(r"\bS\.(\w+)", code):
            assert ref in STATES, f"{name}.lua: S.{ref} is not an ItemState"
        for ref in re.findall(r"\bB\.(\w+)", code):
            assert ref in STATUSES, f"{name}.lua: B.{ref} is not a BatchStatus"


def test_the_literal_check_sees_a_spelled_out_state() -> None:
    code = code_of("if state == 'submitted' then -- 'failed' in a comment is fine\n")
    assert set(re.findall(r"'([^']*)'", code)) & STATES == {"submitted"}


def test_a_loaded_script_runs_on_redis(store: JobStore) -> None:
    store.ingest.create("b1", {"provider": "novita", "model": "m"}, created_at=1.0)
    store.ingest.add_items("b1", [{"seq": "1", "state": "pending", "provider": "novita",
                                   "line": "2"}])
    store.ingest.commit("b1", ["novita"])
    assert dispatch_items(store, "novita", "b1", limit=5, max_n=5, lease_until=9.0) == ["b1:1"]
    moved = store.items.transition(item_id("b1", 1), "*", ItemState.SUCCEEDED)
    assert moved.applied and moved.previous == "dispatched" and moved.open_items == 0
    # terminal now
    assert not store.items.transition(item_id("b1", 1), "*", ItemState.FAILED).applied


def test_claim_due_drops_the_timer_of_a_pending_item(store: JobStore) -> None:
    """A pending item waits on its account's pending list, not on a timer: a stale timer
    of one is dropped, not claimed (pending is not terminal, but has nothing due)."""
    store.ingest.create("b1", {"provider": "novita", "model": "m"}, created_at=1.0)
    store.ingest.add_items("b1", [{"seq": "1", "state": "pending", "provider": "novita",
                                   "line": "2"}])
    store.items.set_timer(item_id("b1", 1), 1.0)
    assert claimed(store, 5.0, 50.0, 10) == []
    assert store.debug.timer(item_id("b1", 1)) is None


def test_the_item_writer_shares_the_stores_add_items_script(store: JobStore) -> None:
    store.ingest.create("b1", {"provider": "novita", "model": "m"}, created_at=1.0)
    writer = store.ingest.writer()
    try:
        assert writer.script is store.ingest._add_items  # one Script object, one sha
        store.debug.client.script_flush()  # a restarted Redis: the writer loads the script again
        writer.send(store.ingest.pack("b1", [{"seq": "1", "state": "pending",
                                              "provider": "novita", "line": "2"}]))
        assert writer.receive() == []
    finally:
        writer.close()
    assert store.batches.get("b1")["pending"] == "1"


def test_the_item_writer_loads_the_script_even_for_a_gone_batch(store: JobStore) -> None:
    writer = store.ingest.writer()
    try:
        store.debug.client.script_flush()
        writer.send(store.ingest.pack("gone", [{"seq": "1", "state": "pending",
                                                "provider": "novita", "line": "2"}]))
        with pytest.raises(GenbatchError, match="discarded while it was being written"):
            writer.receive()
    finally:
        writer.close()
