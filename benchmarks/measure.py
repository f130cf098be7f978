"""Timing one system on one workload: the fastest of repeated runs, within a time budget.

Every system hands the runner a `Batch`: run the workload `k` times back to back and return
each run's seconds and the value the last run computed (the sum of the sinks, which every
system must agree on). Systems that drive an event loop time their runs inside it, so a
tiny workflow is not charged for starting the loop.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

#: Run the workload `k` times; each run's seconds, and the final value of the last one.
Batch = Callable[[int], tuple[list[float], int]]


def sync_batch(run: Callable[[], int]) -> Batch:
    """A `Batch` over a plain call that runs the workload once and returns its value."""

    def batch(k: int) -> tuple[list[float], int]:
        times = []
        value = 0
        clock = time.perf_counter
        for _ in range(k):
            start = clock()
            value = run()
            times.append(clock() - start)
        return times, value

    return batch


@dataclass(frozen=True)
class Timing:
    best: float  # seconds of the fastest run (the least disturbed by other load)
    runs: int  # how many runs were timed
    value: int  # what the workload computed
    first: float  # seconds of the warm-up run


def fastest(batch: Batch, *, budget: float, max_runs: int, cold_first: bool = False) -> Timing:
    """The fastest of up to `max_runs` runs after one warm-up, stopping once `budget`
    seconds are spent. A warm-up that alone takes the whole budget is kept as the only run
    (a slow peer is still measured, only fewer times), unless `cold_first`: the system's
    first run does work its later runs skip (compiling, storing new outputs)."""
    gc.collect()  # what earlier systems left behind is not this one's to collect
    times, value = batch(1)
    if times[0] > budget and not cold_first:
        return Timing(times[0], 1, value, times[0])
    timed: list[float] = []
    deadline = time.perf_counter() + budget
    step = max(1, min(max_runs, int(budget / 10 / max(times[0], 1e-9))))
    while not timed or (len(timed) < max_runs and time.perf_counter() < deadline):
        more, value = batch(min(step, max_runs - len(timed)))
        timed.extend(more)
    return Timing(min(timed), len(timed), value, times[0])


def throughput(batch: Batch, *, count: int, budget: float) -> tuple[float, int]:
    """Runs per second over `count` runs back to back (fewer if `budget` seconds run out
    first), after a short warm-up; and how many runs that was."""
    gc.collect()
    times, _ = batch(min(count, 20))
    per_run = max(min(times), 1e-9)
    chunk = max(1, min(count, int(0.2 / per_run)))
    total = 0.0
    done = 0
    while done < count and total < budget:
        more, _ = batch(min(chunk, count - done))
        total += sum(more)
        done += len(more)
    return done / total, done
