"""The trial loop of ``als-spark tune`` without Spark: scoring, repeats, early stopping, the best trial.

**Repeats** (``repeats: n``, default 1): each trial is fitted ``n`` times, with
``als.seed``, ``als.seed + 1``, ... ``als.seed + n - 1``, and scored by the mean
of each metric; ``objective_std`` is the standard deviation of the objective
over the seeds. On ML-100k two seeds of one configuration differ by a few
thousandths of NDCG@10, about as much as neighbouring grid points, so repeats
keep the search from picking a lucky initialisation. The best configuration
keeps the base ``als.seed``.

**Early stop** (optional, simple): a trial whose ``als.max_iter`` exceeds
``probe_iter`` is first fitted with ``probe_iter`` iterations. When that probe's
objective is below the best probe objective seen so far minus ``margin``
(absolute, in metric units), the trial is abandoned (``status = stopped``, no
objective); otherwise it is fitted again in full (Spark ALS cannot resume a fit).
Probes all run the same number of iterations, so they compare like with like.
It saves the full fits of bad trials and costs one probe fit and scoring for
every trial, so it pays off when the full fits dominate.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from als_spark.analysis.metrics import METRIC_NAMES
from als_spark.analysis.tune_spec import TuneSpec
from als_spark.config import Config, is_number
from als_spark.errors import ConfigError

log = logging.getLogger(__name__)


STATUS_OK, STATUS_STOPPED = "ok", "stopped"


@dataclass
class Trial:
    """One evaluated configuration. ``objective`` is ``None`` for a stopped trial."""

    number: int
    params: dict[str, Any]
    config: Config
    status: str
    objective: float | None
    probe_objective: float | None
    metrics: dict[str, Any]
    iterations: int
    seconds: float


def describe(params: Mapping[str, Any]) -> str:
    """``rank=64 alpha=4``: the parameters of a trial, for the log."""
    return " ".join(
        f"{key.split('.', 1)[1]}={value:g}" if is_number(value) else f"{key.split('.', 1)[1]}={value}"
        for key, value in params.items()
    )


def repeated(score: Callable[[Config], Mapping[str, Any]], cfg: Config, spec: TuneSpec) -> dict[str, Any]:
    """``score`` averaged over ``spec.repeats`` ALS seeds, with the objective's standard deviation."""
    runs = [
        dict(score(dataclasses.replace(cfg, als=dataclasses.replace(cfg.als, seed=cfg.als.seed + i))))
        for i in range(spec.repeats)
    ]
    if len(runs) == 1:
        return runs[0]
    mean = {name: sum(r[name] for r in runs) / len(runs) for name in METRIC_NAMES}
    values = [r[spec.metric] for r in runs]
    std = math.sqrt(sum((v - mean[spec.metric]) ** 2 for v in values) / (len(values) - 1))
    return {**mean, "users": runs[0]["users"], "objective_std": std}


def run_trials(
    planned: Sequence[tuple[Mapping[str, Any], Config]],
    spec: TuneSpec,
    score: Callable[[Config], Mapping[str, Any]],
    *,
    k: int,
    on_trial: Callable[[Trial], None] | None = None,
) -> list[Trial]:
    """Score each ``(params, config)`` with ``score`` (config -> metrics), applying ``spec.early_stop``.

    The loop of :func:`search` without Spark: ``score`` fits and evaluates one
    configuration and returns :func:`~als_spark.analysis.evaluate.ranking_metrics`'s dict.
    """
    done: list[Trial] = []
    best: Trial | None = None
    best_probe: float | None = None
    stop = spec.early_stop
    started = time.perf_counter()
    for number, (params, cfg) in enumerate(planned, start=1):
        t0 = time.perf_counter()
        probe_value: float | None = None
        if stop is not None and cfg.als.max_iter > stop.probe_iter:
            probe_cfg = dataclasses.replace(cfg, als=dataclasses.replace(cfg.als, max_iter=stop.probe_iter))
            probe_metrics = dict(score(probe_cfg))
            probe_value = comparable(probe_metrics[spec.metric])
            if best_probe is not None and probe_value < best_probe - stop.margin:
                trial = Trial(
                    number,
                    dict(params),
                    cfg,
                    STATUS_STOPPED,
                    None,
                    probe_value,
                    probe_metrics,
                    stop.probe_iter,
                    time.perf_counter() - t0,
                )
                done.append(trial)
                _log_trial(trial, len(planned), spec, k, best, started)
                if on_trial:
                    on_trial(trial)
                continue
        metrics = dict(score(cfg))
        objective = comparable(metrics[spec.metric])
        if stop is not None:
            # With max_iter <= probe_iter the full fit is the probe.
            probe_value = objective if probe_value is None else probe_value
            best_probe = probe_value if best_probe is None else max(best_probe, probe_value)
        trial = Trial(
            number,
            dict(params),
            cfg,
            STATUS_OK,
            objective,
            probe_value,
            metrics,
            cfg.als.max_iter,
            time.perf_counter() - t0,
        )
        done.append(trial)
        if best is None or objective > comparable(best.objective):
            best = trial
        _log_trial(trial, len(planned), spec, k, best, started)
        if on_trial:
            on_trial(trial)
    return done


def comparable(x: float | None) -> float:
    """A metric as a comparable number: NaN and None rank below everything."""
    return -math.inf if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _log_trial(trial: Trial, total: int, spec: TuneSpec, k: int, best: Trial | None, started: float) -> None:
    name = f"{spec.metric}@{k}"
    if trial.status == STATUS_OK:
        result = f"{name}={trial.objective:.4f}"
        if "objective_std" in trial.metrics:
            result += f" (sd {trial.metrics['objective_std']:.4f} over {spec.repeats} seeds)"
    else:
        result = f"stopped after {trial.iterations} iterations ({name}={trial.probe_objective:.4f})"
    elapsed = time.perf_counter() - started
    eta = elapsed / trial.number * (total - trial.number)
    best_text = f"best {best.objective:.4f} (trial {best.number})" if best else "no best yet"
    log.info(
        "tune: trial %d/%d %s -> %s in %.1f s; %s; about %.0f s left",
        trial.number,
        total,
        describe(trial.params),
        result,
        trial.seconds,
        best_text,
        eta,
    )


def best_trial(done: Sequence[Trial]) -> Trial:
    """The completed trial with the highest objective (the earliest on a tie)."""
    completed = [t for t in done if t.status == STATUS_OK]
    if not completed:
        raise ConfigError("no trial completed")
    return max(completed, key=lambda t: (comparable(t.objective), -t.number))
