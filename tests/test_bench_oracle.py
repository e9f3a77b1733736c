"""The quota benchmark's oracle: the best makespan any client could reach on given run times."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def quota() -> ModuleType:
    path = Path(__file__).parents[1] / "benchmarks" / "quota.py"
    spec = importlib.util.spec_from_file_location("bench_quota", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_oracle_fills_free_slots_greedily_in_submit_order() -> None:
    oracle = quota().oracle_makespan
    assert oracle([10.0] * 4, 2, 1000) == 20.0
    assert oracle([30.0, 10.0, 10.0, 10.0], 2, 1000) == 30.0  # the short ones share a slot
    assert oracle([], 3, 10) == 0.0


def test_oracle_honours_the_sliding_minute() -> None:
    # 2 submits per minute, 10 slots: the 3rd and 4th wait for the window to slide.
    assert quota().oracle_makespan([1.0] * 4, 10, 2) == 61.0


def test_oracle_spreads_over_keys_and_a_stopped_key_starts_nothing() -> None:
    oracle = quota().oracle_accounts
    # Two keys of one slot each: two tasks at a time, like one key of two slots.
    assert oracle([10.0] * 4, [(1, 1000, float("inf"))] * 2) == 20.0
    assert oracle([10.0] * 4, [(1, 1000, float("inf"))] * 2) \
        == quota().oracle_makespan([10.0] * 4, 2, 1000)
    # Each key has its own sliding minute: 1 submit per minute each, 2 keys → 2 at once.
    assert oracle([1.0] * 4, [(10, 1, float("inf"))] * 2) == 61.0
    # The second key stops at 5 s: its first task still runs, the rest go to the first.
    assert oracle([10.0] * 4, [(1, 1000, float("inf")), (1, 1000, 5.0)]) == 30.0
