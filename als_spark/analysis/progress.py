"""Time per iteration, progress and remaining time of ALS fits.

Spark's ``ALS.fit`` has no per-iteration callback and cannot resume a fit (no
warm start), so a long fit is observed from outside:

* **Time per iteration** from fits of different lengths:
  ``(t(n2) - t(n1)) / (n2 - n1)``; the fixed cost of a fit (caching the
  ratings, building the blocks, writing the factors) cancels. :func:`calibrate`
  runs an untimed warm-up fit and two short fits (1 and 3 iterations by
  default) before the real ones.
* **Iterations done** from the Spark jobs the fit has finished. Implicit ALS
  runs one small job per half-iteration (the ``YᵀY`` Gram matrix of the fixed
  side is an ``aggregate``), plus a few before the loop and one per
  checkpoint: measured on Spark 4.3, a fit of ``n <= 10`` iterations runs
  ``5 + 2n`` jobs. The calibration fits measure both numbers, so nothing
  version-specific is hard-coded. The jobs are counted in a job group the fit
  runs in, through ``SparkContext.statusTracker()``: on a classic session
  only. Over Spark Connect (no ``SparkContext``), or where the context is not
  accessible (Databricks shared access mode), progress degrades to the elapsed
  time and the time-based estimate of the calibration.
* :class:`FitMonitor` logs every ``interval`` seconds, from a background
  thread, the elapsed time, the estimated iteration and the estimated time
  left.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame, SparkSession

from als_spark import model
from als_spark.config import ALSConfig
from als_spark.session import is_connect

log = logging.getLogger(__name__)

_JOB_GROUP = "spark.jobGroup.id"


@dataclass(frozen=True)
class FitCost:
    """What a fit of ``n`` iterations costs: ``overhead + n * seconds_per_iteration`` seconds and
    ``jobs_before + n * jobs_per_iteration`` Spark jobs (``None`` where not measured)."""

    seconds_per_iteration: float
    overhead_seconds: float
    jobs_before: float | None = None
    jobs_per_iteration: float | None = None

    def seconds(self, iterations: int) -> float:
        return max(0.0, self.overhead_seconds) + iterations * self.seconds_per_iteration

    def iterations_done(self, jobs: int, iterations: int) -> float | None:
        """Iterations finished after ``jobs`` finished jobs, or ``None`` when jobs say nothing."""
        if not self.jobs_per_iteration or self.jobs_before is None:
            return None
        return min(float(iterations), max(0.0, (jobs - self.jobs_before) / self.jobs_per_iteration))


@dataclass(frozen=True)
class FitRecord:
    """One timed fit."""

    label: str
    iterations: int
    seconds: float
    jobs: int | None  #: Spark jobs the fit ran (``None`` over Spark Connect)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 20 s``, ``2 h 05 min``."""
    seconds = max(0.0, seconds)
    if seconds < 100:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


class _JobGroup:
    """The Spark jobs run by the calling thread while it is entered, counted through the status tracker.

    The one use of ``SparkContext`` in this module (classic sessions only): a
    job group set as a thread-local property, restored on exit, and the
    number of its jobs that have succeeded. :meth:`enter` returns False where
    no context is accessible, and :meth:`finished` then returns ``None``.
    """

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark
        self.group = f"als-spark-fit-{uuid.uuid4().hex[:12]}"
        self._previous: str | None = None
        self._active = False

    def enter(self) -> bool:
        if is_connect(self.spark):
            return False
        try:
            sc = self.spark.sparkContext
            self._previous = sc.getLocalProperty(_JOB_GROUP)
            sc.setLocalProperty(_JOB_GROUP, self.group)
        except Exception as exc:  # noqa: BLE001 - e.g. Databricks shared access mode refuses sparkContext
            log.debug("no job counts for progress: %s", exc)
            return False
        self._active = True
        return True

    def finished(self) -> int | None:
        if not self._active:
            return None
        tracker = self.spark.sparkContext.statusTracker()
        done = 0
        for job_id in tracker.getJobIdsForGroup(self.group):
            info = tracker.getJobInfo(job_id)
            done += info is not None and info.status == "SUCCEEDED"
        return done

    def exit(self) -> None:
        if self._active:
            # None removes the property (SparkContext.setLocalProperty).
            self.spark.sparkContext.setLocalProperty(_JOB_GROUP, self._previous)  # type: ignore[arg-type]
            self._active = False


class FitMonitor:
    """Time a block and log its progress and remaining time from a background thread.

    ``with FitMonitor(spark, "B seed 2", iterations=20, cost=cost) as monitor:
    model.fit(...)``; afterwards ``monitor.seconds`` holds the elapsed time and
    ``monitor.jobs`` the number of Spark jobs the block ran (``None`` when not
    counted: Spark Connect, or ``count_jobs=False`` for a block that runs more
    than one fit's jobs). With job counts and a ``cost`` measured the same way
    the log shows the iteration reached; otherwise the estimate is by time.
    """

    def __init__(
        self,
        spark: SparkSession,
        label: str,
        *,
        iterations: int,
        cost: FitCost | None = None,
        interval: float = 30.0,
        count_jobs: bool = True,
    ) -> None:
        self.label, self.iterations, self.cost, self.interval = label, iterations, cost, interval
        self.seconds = 0.0
        self.jobs: int | None = None
        self._group = _JobGroup(spark) if count_jobs else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = 0.0

    def _finished_jobs(self) -> int | None:
        return self._group.finished() if self._group is not None else None

    def progress_message(self, elapsed: float, jobs: int | None) -> str:
        """What one progress line says after ``elapsed`` seconds and ``jobs`` finished jobs."""
        parts = [f"{self.label}: {format_seconds(elapsed)} elapsed"]
        done = self.cost.iterations_done(jobs, self.iterations) if (self.cost and jobs is not None) else None
        remaining = None
        if done is not None:
            parts.append(f"iteration ~{done:.0f} of {self.iterations}")
            if done >= 1:
                rate = max(elapsed - max(0.0, self.cost.overhead_seconds), 0.0) / done  # type: ignore[union-attr]
                remaining = rate * (self.iterations - done)
        if remaining is None and self.cost is not None:  # no iteration finished yet, or no job counts: by time
            if done is None:
                by_time = (elapsed - max(0.0, self.cost.overhead_seconds)) / self.cost.seconds_per_iteration
                parts.append(f"iteration ~{min(max(by_time, 0.0), self.iterations):.0f} of {self.iterations} by time")
            remaining = self.cost.seconds(self.iterations) - elapsed
        if remaining is not None:
            parts.append(f"~{format_seconds(remaining)} left" if remaining > 0 else "finishing")
        return ", ".join(parts)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                log.info(self.progress_message(time.perf_counter() - self._start, self._finished_jobs()))
            except Exception as exc:  # noqa: BLE001 - progress is informational; never fail the fit over it
                log.debug("progress of %s not available: %s", self.label, exc)

    def __enter__(self) -> FitMonitor:
        if self._group is not None and not self._group.enter():
            self._group = None
        if self.cost is not None:
            log.info(
                "%s: %d iterations, estimated %s (%.2f s/iteration)",
                self.label,
                self.iterations,
                format_seconds(self.cost.seconds(self.iterations)),
                self.cost.seconds_per_iteration,
            )
        self._start = time.perf_counter()
        if self.interval > 0:
            self._thread = threading.Thread(target=self._run, name=f"progress {self.label}", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._group is not None:
            try:
                self.jobs = self._group.finished()
            except Exception as error:  # noqa: BLE001
                log.debug("cannot count the jobs of %s: %s", self.label, error)
            self._group.exit()


def timed_fit(
    interactions: DataFrame,
    cfg: ALSConfig,
    *,
    num_blocks: int,
    label: str,
    cost: FitCost | None = None,
    interval: float = 30.0,
) -> tuple[ALSModel, FitRecord]:
    """:func:`~als_spark.model.fit` with progress logging; returns the model and its :class:`FitRecord`.

    Call inside :func:`~als_spark.model.checkpoint_dir`. The time is the whole
    ``ALS.fit`` call, which materialises both factor tables before it returns.
    """
    with FitMonitor(interactions.sparkSession, label, iterations=cfg.max_iter, cost=cost, interval=interval) as monitor:
        fitted = model.fit(interactions, cfg, num_blocks=num_blocks)
    record = FitRecord(label=label, iterations=cfg.max_iter, seconds=round(monitor.seconds, 3), jobs=monitor.jobs)
    log.info("%s: fitted %d iterations in %.1f s", label, cfg.max_iter, monitor.seconds)
    return fitted, record


def cost_from(records: Sequence[FitRecord]) -> FitCost | None:
    """A :class:`FitCost` from timed fits of at least two different lengths (least squares), or ``None``."""
    if len({r.iterations for r in records}) < 2:
        return None
    n = [float(r.iterations) for r in records]
    t = [r.seconds for r in records]
    slope, intercept = _line(n, t)
    jobs = [(float(r.iterations), float(r.jobs)) for r in records if r.jobs is not None]
    jobs_slope = jobs_intercept = None
    if len({x for x, _ in jobs}) >= 2:
        jobs_slope, jobs_intercept = _line([x for x, _ in jobs], [y for _, y in jobs])
    return FitCost(
        seconds_per_iteration=max(slope, 1e-6),
        overhead_seconds=intercept,
        jobs_before=jobs_intercept,
        jobs_per_iteration=jobs_slope,
    )


def difference_per_iteration(n_short: int, t_short: float, n_long: int, t_long: float) -> float:
    """Seconds per iteration from a fit of ``n_short`` and one of ``n_long`` iterations.

    ``(t_long - t_short) / (n_long - n_short)``: the fixed cost of a fit cancels.

    >>> difference_per_iteration(1, 10.0, 15, 38.0)
    2.0
    """
    if n_long == n_short:
        raise ValueError(f"two fits of different lengths are needed, got {n_short} twice")
    return (t_long - t_short) / (n_long - n_short)


def seconds_per_iteration(calibration: Sequence[FitRecord], fits: Sequence[FitRecord]) -> tuple[float | None, str]:
    """Seconds per iteration of one configuration and how it was measured.

    When the seeded fits are at least 3 iterations longer than the longest
    calibration fit: (median seeded fit - that fit) / the difference in
    iterations, which cancels the fixed cost of a fit. Else the calibration
    slope.
    """
    if fits and calibration:
        longest = max(calibration, key=lambda r: r.iterations)
        n = fits[0].iterations
        if n >= longest.iterations + 3:
            t = float(np.median([r.seconds for r in fits]))
            return difference_per_iteration(longest.iterations, longest.seconds, n, t), (
                f"(median {n}-iteration fit - {longest.iterations}-iteration fit) / {n - longest.iterations}"
            )
    cost = cost_from(calibration)
    if cost is not None:
        lengths = sorted({r.iterations for r in calibration})
        return cost.seconds_per_iteration, f"slope of fits of {' and '.join(map(str, lengths))} iterations"
    return None, "not measured"


def _line(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    mx, my = sum(x) / len(x), sum(y) / len(y)
    sxx = sum((a - mx) ** 2 for a in x)
    slope = sum((a - mx) * (b - my) for a, b in zip(x, y)) / sxx
    return slope, my - slope * mx


def calibrate(
    interactions: DataFrame,
    cfg: ALSConfig,
    *,
    num_blocks: int,
    label: str,
    iterations: Sequence[int] = (1, 3),
    warm_up: bool = True,
) -> tuple[FitCost | None, list[FitRecord]]:
    """Time short fits of ``cfg`` (``iterations``, each distinct) and return their :class:`FitCost`.

    With ``warm_up`` an untimed 1-iteration fit runs first: the first fits of
    a fresh JVM also pay for JIT compilation (measured: a 1-iteration fit 4x
    slower than the next one), which would bend the slope. Returns ``(None, [])`` when fewer
    than two lengths are given. Call inside :func:`~als_spark.model.checkpoint_dir`.
    """
    lengths = sorted(set(iterations))
    if len(lengths) < 2:
        return None, []

    def timed(n: int, what: str) -> FitRecord:
        _, record = timed_fit(
            interactions,
            dataclasses.replace(cfg, max_iter=n),
            num_blocks=num_blocks,
            label=f"{label} {what} ({n} iterations)",
            interval=0,
        )
        return record

    if warm_up:
        timed(1, "warm-up")
    records = [timed(n, "calibration") for n in lengths]
    cost = cost_from(records)
    if cost is not None:
        log.info(
            "%s: %.2f s per iteration (from fits of %s iterations)",
            label,
            cost.seconds_per_iteration,
            " and ".join(map(str, lengths)),
        )
    return cost, records
