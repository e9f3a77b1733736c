"""The simulator's whole state, in memory: profile, random generator, tasks, ledgers and
stats. One instance per app; everything runs on one event loop, so no locks.

There is a ledger per account (provider, API key) and one per model at an account (provider,
API key, model): every task is counted in both, so a model's own limits (`model_limits`)
apply on top of the account's, and stats can be read at either level.
"""

from __future__ import annotations

import random
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from starlette.requests import Request

from genbatch.simulator.limits import KeyLedger
from genbatch.simulator.media import Media, Upload
from genbatch.simulator.profile import Behaviour, SimProfile
from genbatch.simulator.stats import Stats
from genbatch.simulator.tasks import Phase, Task, sample_run_s

Clock = Callable[[], float]
MINUTE_S = 60.0
# Providers whose output URLs are presigned per request (a fresh one on each poll).
SIGNS_PER_REQUEST = frozenset({"novita", "highwayapi", "byteplus"})


class Simulator:
    def __init__(self, profile: SimProfile, clock: Clock = time.time) -> None:
        self.clock = clock
        self.secret = secrets.token_bytes(16)  # signs video URLs and webhook secrets
        self.media = Media(self.secret)
        self.profile = profile
        self.media.distinct = profile.distinct_videos
        self.reset()

    def reset(self) -> None:
        """Forget every task and counter; restart the random generator from the profile seed."""
        self.rng = random.Random(self.profile.seed)
        self.tasks: dict[str, Task] = {}
        self.uploads: dict[str, Upload] = {}  # WaveSpeed media uploads by id (uploads.py)
        self.ledgers: defaultdict[tuple[str, str], KeyLedger] = defaultdict(KeyLedger)
        self.model_ledgers: defaultdict[tuple[str, str, str], KeyLedger] = defaultdict(KeyLedger)
        self.stats = Stats(log_size=self.profile.request_log_size)

    def replace_profile(self, profile: SimProfile) -> None:
        """Swap the profile; tasks already created keep their timelines. The next request
        sees it whole: per-key behaviours are resolved afresh (the cache of `for_key` lives
        on the profile), so a key dropped from `api_keys` answers auth errors at once."""
        self.profile = profile
        self.media.distinct = profile.distinct_videos
        self.stats.resize_log(profile.request_log_size)

    def behaviour(self, api_key: str) -> Behaviour:
        return self.profile.for_key(api_key)

    def roll(self, probability: float) -> bool:
        """True with `probability`; draws nothing when it is 0, so adding a zero-probability
        knob never shifts the random sequence."""
        return probability > 0 and self.rng.random() < probability

    def unique_id(self, make: Callable[[random.Random], str]) -> str:
        while (task_id := make(self.rng)) in self.tasks:
            pass
        return task_id

    def ledger(self, provider: str, api_key: str, model: str | None = None) -> KeyLedger:
        """The account's ledger, or with `model` that model's at the account. Reading does
        not create one, so refused submits leave no trace in the stats."""
        if model is None:
            found = self.ledgers.get((provider, api_key))
        else:
            found = self.model_ledgers.get((provider, api_key, model))
        return KeyLedger() if found is None else found

    def rpm_exceeded(
        self, provider: str, api_key: str, behaviour: Behaviour, model: str | None = None
    ) -> bool:
        """Whether one more submit would pass the account's rpm or, with `model`, that
        model's own rpm at the account (`model_limits`)."""
        if model is None:
            rpm = behaviour.rpm
        else:
            limit = behaviour.model_limits.get(model)
            rpm = None if limit is None else limit.rpm
        if rpm is None:
            return False
        window = MINUTE_S / behaviour.time_factor
        ledger = self.ledger(provider, api_key, model)
        return ledger.submits_in_window(self.clock(), window) >= rpm

    def in_flight(self, provider: str, api_key: str, model: str | None = None) -> int:
        return self.ledger(provider, api_key, model).in_flight.count(self.clock())

    def queued(self, provider: str, api_key: str) -> int:
        return self.ledger(provider, api_key).queued.count(self.clock())

    def create_task(
        self,
        *,
        task_id: str,
        provider: str,
        model: str,
        api_key: str,
        fingerprint: str,
        params: dict[str, Any],
        queue_for_slot: bool,
        expires_after_s: float | None,
        failures: Sequence[tuple[str, str]],
        url_ttl_s: float,
        start_by_s: float | None = None,
    ) -> Task:
        """Create a task and fix its timeline.

        `queue_for_slot`: wait (queued) for a free concurrency slot of the account, and of
        the model at the account if it has a limit, instead of the caller refusing
        over-concurrency submits. `expires_after_s` (simulated): a task not finished
        by then ends `expired`. `failures`: (code, message) pairs a failed task picks from.
        `url_ttl_s`: the provider's output URL lifetime, unless the profile sets one.
        `start_by_s` (simulated): a task not started by then ends `expired` without running
        (fal's X-Fal-Request-Timeout).
        """
        behaviour = self.behaviour(api_key)
        now, factor = self.clock(), behaviour.time_factor
        ledger = self.ledgers[provider, api_key]
        model_ledger = self.model_ledgers[provider, api_key, model]
        model_limit = behaviour.model_limits.get(model)
        concurrency = behaviour.concurrency if queue_for_slot else None
        model_concurrency = (model_limit.concurrency
                             if queue_for_slot and model_limit is not None else None)
        ready = now + behaviour.queue_delay_s / factor
        start = max(ready, ledger.slot_free(concurrency),
                    model_ledger.slot_free(model_concurrency))
        run = sample_run_s(self.rng, behaviour.latency_mean_s, behaviour.latency_sigma) / factor
        end = start + run
        outcome = Phase.FAILED if self.roll(behaviour.p_task_fail) else Phase.SUCCEEDED
        if start_by_s is not None and start > (start_by := now + start_by_s / factor):
            start, end, outcome = start_by, start_by, Phase.EXPIRED
        if expires_after_s is not None and end > (deadline := now + expires_after_s / factor):
            start, end, outcome = min(start, deadline), deadline, Phase.EXPIRED
        if end > start:  # a task expiring before its start never occupies a slot
            ledger.take_slot(task_id, start, end, concurrency)
            model_ledger.take_slot(task_id, start, end, model_concurrency)
        ledger.admit(task_id, now, start, end, MINUTE_S / factor)
        model_ledger.admit(task_id, now, start, end, MINUTE_S / factor)
        task = Task(
            id=task_id, provider=provider, model=model, api_key=api_key,
            fingerprint=fingerprint, params=params, created=now, start=start, end=end,
            outcome=outcome, time_factor=factor,
            url_ttl_s=url_ttl_s if behaviour.url_ttl_s is None else behaviour.url_ttl_s,
            fresh_urls=(provider in SIGNS_PER_REQUEST if behaviour.fresh_url_per_poll is None
                        else behaviour.fresh_url_per_poll),
        )
        self._record(task, failures)
        return task

    def _record(self, task: Task, failures: Sequence[tuple[str, str]]) -> None:
        """Keep a new task, with its failure or its video, and count it."""
        if task.outcome is Phase.FAILED:
            task.error_code, task.error_message = self.rng.choice(failures)
        elif task.outcome is Phase.SUCCEEDED:
            task.video_sha256 = self.media.video_sha256(task.id)
        self.tasks[task.id] = task
        self.stats.submits += 1
        self.stats.record_run((task.end - task.start) * task.time_factor)
        self.stats.submits_by_fingerprint[task.fingerprint] += 1

    def find(self, provider: str, api_key: str, task_id: str) -> Task | None:
        """The task, if it exists for this provider and account."""
        task = self.tasks.get(task_id)
        if task is None or task.provider != provider or task.api_key != api_key:
            return None
        return task

    def cancel(self, task: Task) -> None:
        planned_start, now = task.start, self.clock()
        task.cancel(now)
        self.ledgers[task.provider, task.api_key].release(task.id, planned_start, now)
        self.model_ledgers[task.provider, task.api_key, task.model].release(
            task.id, planned_start, now
        )
        self.stats.cancels += 1

    def delete(self, task: Task) -> None:
        del self.tasks[task.id]

    def stats_json(self) -> dict[str, Any]:
        """`GET /_sim/stats`: the counters of `Stats.as_json` plus, read off the tasks now,
        `tasks_by_status`, `videos` ({task id: sha256} of succeeded tasks),
        `downloads_by_task`; per account ({provider: {api key: n}}) `in_flight`,
        `max_in_flight`, `queued`, `max_running` (the most tasks started and not finished
        at once) and `max_submits_per_minute` (simulated minute); and `by_model`, the same
        five per model at an account ({provider: {api key: {model: {measure: n}}}})."""
        now = self.clock()
        statuses: defaultdict[str, int] = defaultdict(int)
        videos: dict[str, str] = {}
        for task in self.tasks.values():
            phase = task.phase(now)
            statuses[phase.value] += 1
            if phase is Phase.SUCCEEDED:
                videos[task.id] = task.video_sha256
        out = self.stats.as_json()
        out.update(
            tasks_by_status=dict(statuses),
            videos=videos,
            downloads_by_task={t.id: t.downloads for t in self.tasks.values() if t.downloads},
            **{name: self._per_account(measure)
               for name, measure in _measures(now).items()},
            by_model=self._per_model(now),
        )
        return out

    def _per_account(self, measure: Callable[[KeyLedger], int]) -> dict[str, dict[str, int]]:
        """{provider: {api key: measure}} over every account seen."""
        out: defaultdict[str, dict[str, int]] = defaultdict(dict)
        for (provider, api_key), ledger in self.ledgers.items():
            out[provider][api_key] = measure(ledger)
        return dict(out)

    def _per_model(self, now: float) -> dict[str, dict[str, dict[str, dict[str, int]]]]:
        """{provider: {api key: {model: {measure: n}}}} over every model seen at an account."""
        measures = _measures(now)
        out: defaultdict[str, defaultdict[str, dict[str, dict[str, int]]]] = defaultdict(
            lambda: defaultdict(dict)
        )
        for (provider, api_key, model), ledger in self.model_ledgers.items():
            out[provider][api_key][model] = {
                name: measure(ledger) for name, measure in measures.items()
            }
        return {provider: dict(keys) for provider, keys in out.items()}


def _measures(now: float) -> dict[str, Callable[[KeyLedger], int]]:
    """What stats report of each ledger, by name."""
    return {
        "in_flight": lambda led: led.in_flight.count(now),
        "max_in_flight": lambda led: led.max_in_flight,
        "queued": lambda led: led.queued.count(now),
        "max_running": lambda led: led.max_running(now),
        "max_submits_per_minute": lambda led: led.max_submits_per_window,
    }


def simulator_of(request: Request) -> Simulator:
    sim: Simulator = request.app.state.sim
    return sim
