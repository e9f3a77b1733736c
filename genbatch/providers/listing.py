"""Reading a provider's task list page by page, newest first, back to a point in time.

Used to reconcile an ambiguous submit (`genbatch/worker/reconcile.py`): which tasks of a
model did this account create in a time window? A listing is `complete` when the pages went
back past `since` or ran out; a cap on pages keeps one call bounded (then it is not complete,
and the caller tries again later rather than concluding anything).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from genbatch.providers.base import RemoteTask, TaskListing

PAGE_SIZE = 100
MAX_PAGES = 20


def walk(fetch: Callable[[int], list[RemoteTask]], since: float, model: str) -> TaskListing:
    """Fetch pages 1, 2, … (`fetch(page)` returns that page's tasks, newest first) until a
    task older than `since` or a short page; keep the tasks of `model` created since."""
    kept: list[RemoteTask] = []
    for page in range(1, MAX_PAGES + 1):
        tasks = fetch(page)
        kept += [t for t in tasks if t.created_at >= since and t.model == model]
        if len(tasks) < PAGE_SIZE or (tasks and min(t.created_at for t in tasks) < since):
            return TaskListing(kept, complete=True)
    return TaskListing(kept, complete=False)


def timestamp(value: object) -> float:
    """Unix seconds from a number (seconds) or an ISO 8601 string (`…Z` allowed); 0 when
    unreadable (such a task sorts as ancient and is never adopted)."""
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return 0.0
    return 0.0
