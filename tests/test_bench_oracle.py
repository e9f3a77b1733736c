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
