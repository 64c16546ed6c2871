"""Hyper-parameter search for implicit ALS, scored on a validation split cut from train.

**Data.** The interactions (ratings >= ``ingest.min_rating``) are split per user
exactly as :func:`~als_spark.evaluate.run_evaluate` splits them
(:func:`~als_spark.evaluate.split_per_user_random` with ``seed``). The *search*
only ever receives the train side: :func:`search` splits it again per user, with
a different seed (``validation_seed``), into a fit part and a validation part.
Every trial fits ALS on the fit part and recommends ``k`` unseen items (never an
item of the user's fit part) to each validation user; the objective is one
ranking metric of :func:`~als_spark.evaluate.ranking_metrics` (``ndcg`` by
default) on the validation part. Only after the search does :func:`run_tune`
evaluate the best configuration, once, on the test split (fitted on the whole
train side, by :func:`~als_spark.evaluate.run_evaluate`), next to any
``compare`` configurations and the popularity and random baselines.

**Spec** (:func:`parse_spec`; YAML, optionally under a top-level ``tune:`` key)::

    method: random          # grid | random
    n_trials: 30            # random only (default 20); grid runs the whole product
    seed: 1                 # random only: the same seed draws the same trials
    metric: ndcg            # precision | recall | ndcg | map | hit_rate | coverage (maximised)
    repeats: 1              # fits per trial, with als.seed, als.seed + 1, ...; metrics averaged
    space:                  # tunable keys: see TUNABLE
      als.rank: [16, 32, 64, 128]              # a list: choose one of these
      als.reg_param: {low: 0.1, high: 100, log: true}   # a range: random only
      als.max_iter: 15                         # a scalar: fixed
      ingest.confidence: [rating, binary]
      recommend.popularity_weight: [0, 0.05, 0.1]   # scoring only: each value is still a fit
    early_stop:             # optional; absent or null = every trial runs in full
      probe_iter: 5
      margin: 0.01

Grid search runs the product of the lists in the order the keys are given (the
last key varies fastest). Random search draws ``n_trials`` distinct points
without replacement when every entry is a list (fewer if the product is
smaller), otherwise draws every key independently (log-uniform for
``log: true``; rounded for integer keys; the same point may come twice). Keys of
the base configuration not in ``space`` keep their base value.

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

**Outputs** of :func:`run_tune` under ``output``: ``leaderboard`` (Parquet,
:data:`LEADERBOARD`, best first), ``best.yaml`` (a complete configuration for
``--config``), ``tune.png`` (the objective against each parameter; needs
matplotlib, skipped with a warning without it), ``test_metrics`` (Parquet,
:data:`~als_spark.evaluate.METRICS`: ``tuned``, the ``compare`` rows, the
baselines) and ``tune.json`` (spec, splits, best trial, test metrics, timings).
The search's outputs are published (:class:`~als_spark.publish.Publisher`) as
soon as it ends, so a failure in the test evaluation does not lose them; the
test metrics and ``tune.json`` follow. Nothing is written during the search:
the log shows its progress, one line per trial.
"""

from __future__ import annotations

import dataclasses
import difflib
import io
import itertools
import logging
import math
import os
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import yaml
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, IntegerType, LongType, StringType, StructField, StructType

from als_spark import evaluate as E
from als_spark import feedback, model, publish
from als_spark import schema as S
from als_spark.config import Config, build_config, read_yaml
from als_spark.errors import ConfigError, InputDataError
from als_spark.recommend import popularity_prior, recommend
from als_spark.runinfo import Timer

log = logging.getLogger(__name__)

METHODS = ("grid", "random")
#: Keys a search may vary. ``ingest.min_rating`` is not one: it changes the interactions
#: and so the validation and test sets, and the objectives would no longer compare.
TUNABLE = (
    "als.rank", "als.max_iter", "als.reg_param", "als.alpha", "ingest.confidence", "recommend.popularity_weight",
)
#: Leaderboard column of each tunable key.
PARAM_COLUMNS = {key: key.replace(".", "_") for key in TUNABLE}
STATUS_OK, STATUS_STOPPED = "ok", "stopped"
#: Name of the tuned configuration's row in ``test_metrics``.
BEST_MODEL = "tuned"
DEFAULT_N_TRIALS = 20

#: The leaderboard: one row per trial, best objective first (stopped trials last).
#: Every metric is measured on the *validation* split.
LEADERBOARD = StructType(
    [
        StructField("position", IntegerType(), False),
        StructField("trial", IntegerType(), False),
        StructField("als_rank", IntegerType(), False),
        StructField("als_max_iter", IntegerType(), False),
        StructField("als_reg_param", DoubleType(), False),
        StructField("als_alpha", DoubleType(), False),
        StructField("ingest_confidence", StringType(), False),
        StructField("recommend_popularity_weight", DoubleType(), False),
        StructField("status", StringType(), False),
        StructField("metric", StringType(), False),
        StructField("k", IntegerType(), False),
        StructField("objective", DoubleType(), True),
        StructField("objective_std", DoubleType(), True),
        StructField("probe_objective", DoubleType(), True),
        *[StructField(name, DoubleType(), True) for name in E.METRIC_NAMES],
        StructField("users", LongType(), True),
        StructField("iterations", IntegerType(), False),
        StructField("seconds", DoubleType(), False),
    ]
)


# --- the spec ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """A continuous range for random search: uniform, or log-uniform with ``log``."""

    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class EarlyStop:
    """Abandon a trial whose objective after ``probe_iter`` iterations is below the best probe minus ``margin``."""

    probe_iter: int = 5
    margin: float = 0.01


@dataclass(frozen=True)
class TuneSpec:
    """What to search: see the module docstring. Build it with :func:`parse_spec`."""

    space: Mapping[str, tuple[Any, ...] | Range]
    method: str = "grid"
    n_trials: int = DEFAULT_N_TRIALS
    seed: int = 1
    metric: str = "ndcg"
    early_stop: EarlyStop | None = None
    repeats: int = 1

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data (what ``tune.json`` records; :func:`parse_spec` reads it back)."""
        space = {
            key: dataclasses.asdict(value) if isinstance(value, Range) else list(value)
            for key, value in self.space.items()
        }
        early = dataclasses.asdict(self.early_stop) if self.early_stop else None
        return {
            "method": self.method, "n_trials": self.n_trials, "seed": self.seed,
            "metric": self.metric, "repeats": self.repeats, "space": space, "early_stop": early,
        }


_SPEC_KEYS = ("method", "n_trials", "seed", "metric", "repeats", "space", "early_stop")


def _unknown(what: str, name: str, known: Sequence[str]) -> ConfigError:
    hint = difflib.get_close_matches(name, list(known), n=1)
    suggestion = f" Did you mean '{hint[0]}'?" if hint else ""
    return ConfigError(f"unknown {what} '{name}'.{suggestion} Known: {', '.join(known)}.")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def trial_config(base: Config, params: Mapping[str, Any]) -> Config:
    """``base`` with ``params`` (``section.key -> value``) set, validated by :func:`~als_spark.config.build_config`."""
    tree = base.to_dict()
    for key, value in params.items():
        section, _, name = key.partition(".")
        tree[section][name] = value
    return build_config(tree)


def _param_value(cfg: Config, key: str) -> Any:
    section, _, name = key.partition(".")
    return getattr(getattr(cfg, section), name)


def _check_space_value(key: str, value: Any) -> Any:
    """``value`` as the configuration stores it (e.g. 1 -> 1.0 for a float key); ConfigError naming the key."""
    try:
        return _param_value(trial_config(Config(), {key: value}), key)
    except ConfigError as exc:
        raise ConfigError(f"tune.space.{key}: {exc}") from None


def parse_spec(tree: Mapping[str, Any] | None) -> TuneSpec:
    """Validate a search spec (a mapping, optionally under a ``tune`` key); errors name the key."""
    if isinstance(tree, Mapping) and set(tree) == {"tune"}:
        tree = tree["tune"]
    if not isinstance(tree, Mapping):
        raise ConfigError("tune: expected a mapping with method, space, ...")
    for key in tree:
        if key not in _SPEC_KEYS:
            raise _unknown("tune key", f"tune.{key}", [f"tune.{k}" for k in _SPEC_KEYS])
    method = tree.get("method", "grid")
    if method not in METHODS:
        raise ConfigError(f"tune.method must be one of {', '.join(METHODS)}, got {method!r}")
    n_trials = tree.get("n_trials", DEFAULT_N_TRIALS)
    if not _is_int(n_trials) or n_trials < 1:
        raise ConfigError(f"tune.n_trials must be a positive integer, got {n_trials!r}")
    seed = tree.get("seed", 1)
    if not _is_int(seed):
        raise ConfigError(f"tune.seed must be an integer, got {seed!r}")
    metric = tree.get("metric", "ndcg")
    if metric not in E.METRIC_NAMES:
        raise ConfigError(f"tune.metric must be one of {', '.join(E.METRIC_NAMES)}, got {metric!r}")
    repeats = tree.get("repeats", 1)
    if not _is_int(repeats) or repeats < 1:
        raise ConfigError(f"tune.repeats must be a positive integer, got {repeats!r}")

    raw_space = tree.get("space")
    if not isinstance(raw_space, Mapping) or not raw_space:
        raise ConfigError("tune.space must be a non-empty mapping of configuration key: values")
    space: dict[str, tuple[Any, ...] | Range] = {}
    for key, values in raw_space.items():
        key = str(key)
        if key not in TUNABLE:
            if "." in key:
                section, _, name = key.partition(".")
                known_keys = Config().to_dict().get(section, {})
                if name in known_keys:
                    raise ConfigError(f"tune.space: '{key}' cannot be tuned; tunable keys: {', '.join(TUNABLE)}")
            raise _unknown("tune.space key", key, TUNABLE)
        if isinstance(values, Mapping):
            space[key] = _parse_range(key, values, method)
        else:
            choices = list(values) if isinstance(values, (list, tuple)) else [values]
            if not choices:
                raise ConfigError(f"tune.space.{key}: needs at least one value")
            checked = tuple(_check_space_value(key, v) for v in choices)
            if len(set(checked)) != len(checked):
                raise ConfigError(f"tune.space.{key}: repeated value in {choices!r}")
            space[key] = checked

    early = tree.get("early_stop")
    early_stop = None
    if early not in (None, False):
        if early is True:
            early = {}
        if not isinstance(early, Mapping):
            raise ConfigError("tune.early_stop must be a mapping with probe_iter and margin, or null")
        for key in early:
            if key not in ("probe_iter", "margin"):
                raise _unknown("tune key", f"tune.early_stop.{key}", ["tune.early_stop.probe_iter", "tune.early_stop.margin"])
        probe, margin = early.get("probe_iter", 5), early.get("margin", 0.01)
        if not _is_int(probe) or probe < 1:
            raise ConfigError(f"tune.early_stop.probe_iter must be a positive integer, got {probe!r}")
        if not _is_number(margin) or margin < 0:
            raise ConfigError(f"tune.early_stop.margin must be a number >= 0, got {margin!r}")
        early_stop = EarlyStop(probe_iter=probe, margin=float(margin))
    return TuneSpec(
        space=space, method=method, n_trials=n_trials, seed=seed, metric=metric, early_stop=early_stop, repeats=repeats
    )


def _parse_range(key: str, values: Mapping[str, Any], method: str) -> Range:
    if method != "random":
        raise ConfigError(f"tune.space.{key}: a range ({{low, high}}) needs method random; grid takes a list")
    for name in values:
        if name not in ("low", "high", "log"):
            raise _unknown("tune key", f"tune.space.{key}.{name}", ["low", "high", "log"])
    low, high, use_log = values.get("low"), values.get("high"), values.get("log", False)
    if not (_is_number(low) and _is_number(high) and low <= high):
        raise ConfigError(f"tune.space.{key}: a range needs numbers low <= high, got low={low!r}, high={high!r}")
    if not isinstance(use_log, bool):
        raise ConfigError(f"tune.space.{key}.log must be true or false, got {use_log!r}")
    if use_log and low <= 0:
        raise ConfigError(f"tune.space.{key}: a log range needs low > 0, got {low!r}")
    if isinstance(_param_value(Config(), key), str):
        raise ConfigError(f"tune.space.{key}: takes a list of values, not a range")
    for bound in (low, high):
        _check_space_value(key, int(round(bound)) if _is_int(_param_value(Config(), key)) else bound)
    return Range(low=float(low), high=float(high), log=use_log)


def load_spec(path: str | os.PathLike) -> TuneSpec:
    """Read a search spec from a YAML file (see :func:`parse_spec`)."""
    return parse_spec(read_yaml(path, "tune spec file"))


def trials(spec: TuneSpec) -> list[dict[str, Any]]:
    """The parameter sets the search will run, in order (``section.key -> value``)."""
    keys = list(spec.space)
    if spec.method == "grid":
        lists = [spec.space[k] for k in keys]  # parse_spec allows only lists with grid
        return [dict(zip(keys, combo)) for combo in itertools.product(*lists)]
    rng = random.Random(spec.seed)
    if all(not isinstance(v, Range) for v in spec.space.values()):
        # Distinct points: sample indices of the product without replacement, decode mixed-radix.
        sizes = [len(spec.space[k]) for k in keys]
        total = math.prod(sizes)
        picked = rng.sample(range(total), min(spec.n_trials, total))
        out = []
        for index in picked:
            params = {}
            for key, size in zip(reversed(keys), reversed(sizes)):
                index, pos = divmod(index, size)
                params[key] = spec.space[key][pos]
            out.append({k: params[k] for k in keys})
        return out
    out = []
    for _ in range(spec.n_trials):
        params = {}
        for key in keys:
            values = spec.space[key]
            if isinstance(values, Range):
                if values.log:
                    x = math.exp(rng.uniform(math.log(values.low), math.log(values.high)))
                else:
                    x = rng.uniform(values.low, values.high)
                params[key] = int(round(x)) if _is_int(_param_value(Config(), key)) else float(f"{x:.4g}")
            else:
                params[key] = rng.choice(values)
        out.append(params)
    return out


# --- the search ------------------------------------------------------------------------------


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


@dataclass
class _Validation:
    """The fit part (by confidence mode), validation pairs, and what scoring them needs; all cached."""

    fit_ratings: DataFrame
    validation: DataFrame
    users: DataFrame
    exclude: DataFrame
    catalog_size: int
    n_users: int = 0
    by_confidence: dict[str, DataFrame] = field(default_factory=dict)
    cached: list[DataFrame] = field(default_factory=list)

    def interactions(self, mode: str) -> DataFrame:
        """``user_id, item_id, confidence`` of the fit part, cached and materialised once per mode."""
        if mode not in self.by_confidence:
            df = self.fit_ratings.transform(feedback.with_confidence, mode).select(S.USER_ID, S.ITEM_ID, S.CONFIDENCE)
            df = df.cache()
            df.count()
            self.cached.append(df)
            self.by_confidence[mode] = df
        return self.by_confidence[mode]

    def release(self) -> None:
        for df in self.cached:
            df.unpersist()


def _fit_and_score(spark: SparkSession, data: _Validation, cfg: Config, *, k: int) -> dict[str, Any]:
    """Fit ``cfg`` on the fit part and score its top-k (unseen) on the validation part."""
    par = model.parallelism(spark)
    fit_part = data.interactions(cfg.ingest.confidence)
    fitted = model.fit(fit_part, cfg.als, num_blocks=par)
    user_factors, item_factors = model.factors(fitted)
    # Every validation user has fit rows and every fit item has factors: the counts are known.
    user_factors = user_factors.join(data.users.withColumnRenamed(S.USER_ID, S.ID), S.ID, "left_semi")
    recs = recommend(
        user_factors, item_factors, top_n=k, exclude=data.exclude,
        item_prior=popularity_prior(fit_part, cfg.recommend.popularity_weight), n_users=data.n_users,
        n_items=data.catalog_size, parallelism=par,
    ).cache()
    try:
        recs.count()  # filled once: ranking_metrics reads the lists in two branches
        return E.ranking_metrics(recs, data.validation, k=k, catalog_size=data.catalog_size)
    finally:
        recs.unpersist()


def _describe(params: Mapping[str, Any]) -> str:
    return " ".join(f"{key.split('.', 1)[1]}={value:g}" if _is_number(value) else f"{key.split('.', 1)[1]}={value}"
                    for key, value in params.items())


def search(
    spark: SparkSession,
    train: DataFrame,
    base: Config,
    spec: TuneSpec,
    *,
    k: int = 10,
    validation_fraction: float = 0.25,
    validation_seed: int = 43,
    on_trial: Callable[[Trial], None] | None = None,
) -> list[Trial]:
    """Run the search on ``train`` only; return the trials in the order they ran.

    ``train`` has ``user_id, item_id, rating``: the interactions the search may
    see (the train side of the test split). It is split per user
    (:func:`~als_spark.evaluate.split_per_user_random` with ``validation_seed``
    and ``validation_fraction``) into a fit part and a validation part; each
    trial's ALS is fitted on the fit part, recommends ``k`` items to every
    validation user (never one of the user's fit items), and is scored on the
    validation part by ``spec.metric`` (see the module docstring for early
    stopping). Logs one line per trial; ``on_trial`` is called after each.
    """
    E._check_k(k)
    E._check_fraction(validation_fraction)
    E._require(train, S.USER_ID, S.ITEM_ID, S.RATING, purpose="tune.search")
    plan = trials(spec)
    configs = [trial_config(base, params) for params in plan]

    # The split of split_per_user_random, labelled once and cached (one window computation);
    # the fit and validation parts are filters of it.
    labelled = E.labelled_split(
        train.select(S.USER_ID, S.ITEM_ID, S.RATING), split="random", test_fraction=validation_fraction,
        seed=validation_seed,
    ).cache()
    fit_part, validation = E._parts(labelled)
    validation = validation.select(S.USER_ID, S.ITEM_ID)
    users = validation.select(S.USER_ID).distinct().cache()
    exclude = feedback.items_per_user(fit_part).cache()
    data = _Validation(
        fit_ratings=fit_part, validation=validation, users=users, exclude=exclude,
        catalog_size=0, cached=[labelled, users, exclude],
    )
    try:
        n_fit, n_validation, n_users, data.catalog_size = E.split_counts(labelled)
        data.n_users = n_users
        if n_validation == 0:
            raise InputDataError(
                "the validation split is empty: no user has enough train interactions to hold one out "
                f"at validation_fraction={validation_fraction:g}"
            )
        log.info(
            "tune: %s search, %d trials, objective %s@%d on a validation split of train "
            "(%d fit and %d validation interactions, %d validation users, %d fit items)",
            spec.method, len(plan), spec.metric, k, n_fit, n_validation, n_users, data.catalog_size,
        )
        with model.checkpoint_dir(spark, base.als.checkpoint_dir):
            return run_trials(
                list(zip(plan, configs)), spec,
                lambda cfg: _repeated(lambda c: _fit_and_score(spark, data, c, k=k), cfg, spec),
                k=k, on_trial=on_trial,
            )
    finally:
        data.release()


def _repeated(score: Callable[[Config], Mapping[str, Any]], cfg: Config, spec: TuneSpec) -> dict[str, Any]:
    """``score`` averaged over ``spec.repeats`` ALS seeds, with the objective's standard deviation."""
    runs = [
        dict(score(dataclasses.replace(cfg, als=dataclasses.replace(cfg.als, seed=cfg.als.seed + i))))
        for i in range(spec.repeats)
    ]
    if len(runs) == 1:
        return runs[0]
    mean = {name: sum(r[name] for r in runs) / len(runs) for name in E.METRIC_NAMES}
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
    configuration and returns :func:`~als_spark.evaluate.ranking_metrics`'s dict.
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
            probe_value = _value(probe_metrics[spec.metric])
            if best_probe is not None and probe_value < best_probe - stop.margin:
                trial = Trial(number, dict(params), cfg, STATUS_STOPPED, None, probe_value,
                              probe_metrics, stop.probe_iter, time.perf_counter() - t0)
                done.append(trial)
                _log_trial(trial, len(planned), spec, k, best, started)
                if on_trial:
                    on_trial(trial)
                continue
        metrics = dict(score(cfg))
        objective = _value(metrics[spec.metric])
        if stop is not None:
            # With max_iter <= probe_iter the full fit is the probe.
            probe_value = objective if probe_value is None else probe_value
            best_probe = probe_value if best_probe is None else max(best_probe, probe_value)
        trial = Trial(number, dict(params), cfg, STATUS_OK, objective, probe_value, metrics,
                      cfg.als.max_iter, time.perf_counter() - t0)
        done.append(trial)
        if best is None or objective > _value(best.objective):
            best = trial
        _log_trial(trial, len(planned), spec, k, best, started)
        if on_trial:
            on_trial(trial)
    return done


def _value(x: float | None) -> float:
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
        trial.number, total, _describe(trial.params), result, trial.seconds, best_text, eta,
    )


def best_trial(done: Sequence[Trial]) -> Trial:
    """The completed trial with the highest objective (the earliest on a tie)."""
    completed = [t for t in done if t.status == STATUS_OK]
    if not completed:
        raise ConfigError("no trial completed")
    return max(completed, key=lambda t: (_value(t.objective), -t.number))


def leaderboard(spark: SparkSession, done: Sequence[Trial], *, metric: str, k: int) -> DataFrame:
    """The trials as a :data:`LEADERBOARD` table: best objective first, stopped trials last, ties by trial."""
    order = sorted(done, key=lambda t: (t.status != STATUS_OK, -_value(t.objective), t.number))
    rows = []
    for position, t in enumerate(order, start=1):
        params = [_param_value(t.config, key) for key in TUNABLE]
        rows.append((
            position, t.number, *params, t.status, metric, k,
            t.objective, t.metrics.get("objective_std") if t.status == STATUS_OK else None, t.probe_objective,
            *[None if t.status != STATUS_OK else t.metrics.get(name) for name in E.METRIC_NAMES],
            t.metrics.get("users") if t.status == STATUS_OK else None,
            t.iterations, round(t.seconds, 3),
        ))
    return spark.createDataFrame(rows, LEADERBOARD)


# --- outputs -------------------------------------------------------------------------------


def config_yaml(cfg: Config, header: str = "") -> str:
    """``cfg`` as a complete YAML configuration file (every key), loadable with ``load_config``."""
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return comment + yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=False)


def plot_png(done: Sequence[Trial], keys: Sequence[str], *, metric: str, k: int) -> bytes | None:
    """A PNG of the objective against each of ``keys`` (one panel each); ``None`` without matplotlib.

    Completed trials are dots, the best per value is joined by a line, the best
    trial is red, and stopped trials are grey crosses at their probe objective.
    Numeric keys spanning 8x or more are on a log axis.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        log.warning("matplotlib is not installed: tune.png is not written (pip install 'als-spark[plot]')")
        return None
    best = best_trial(done)
    fig = Figure(figsize=(4.0 * len(keys), 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, key in zip(axes, keys):
        values = sorted({_param_value(t.config, key) for t in done}, key=lambda v: (isinstance(v, str), v))
        categorical = any(isinstance(v, str) for v in values)
        position = {v: i for i, v in enumerate(values)} if categorical else {v: v for v in values}
        ok = [t for t in done if t.status == STATUS_OK]
        stopped = [t for t in done if t.status == STATUS_STOPPED]
        ax.scatter([position[_param_value(t.config, key)] for t in ok], [t.objective for t in ok],
                   s=18, color="tab:blue", alpha=0.7, label="trial")
        if stopped:
            ax.scatter([position[_param_value(t.config, key)] for t in stopped], [t.probe_objective for t in stopped],
                       s=18, marker="x", color="0.6", label="stopped (probe)")
        per_value = {}
        for t in ok:
            v = _param_value(t.config, key)
            per_value[v] = max(per_value.get(v, -math.inf), t.objective)
        xs = [v for v in values if v in per_value]
        ax.plot([position[v] for v in xs], [per_value[v] for v in xs], color="tab:blue", linewidth=1)
        ax.scatter([position[_param_value(best.config, key)]], [best.objective], s=40, color="tab:red",
                   zorder=3, label=f"best (trial {best.number})")
        if categorical:
            ax.set_xticks(range(len(values)), [str(v) for v in values])
        elif len(values) > 1 and min(values) > 0 and max(values) / min(values) >= 8:
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(f"validation {metric}@{k}")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize="small")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _varied(spec: TuneSpec) -> list[str]:
    """The keys the search varies (a range or more than one value): the plot's panels."""
    return [key for key, values in spec.space.items() if isinstance(values, Range) or len(values) > 1]


def _write(
    spark: SparkSession,
    output: str,
    *,
    tables: Mapping[str, DataFrame] | None = None,
    files: Mapping[str, str] | None = None,
    png: bytes | None = None,
) -> dict[str, str]:
    """Stage and publish ``tables`` (Parquet) and text ``files`` together (:class:`~als_spark.publish.Publisher`),
    then write ``png`` as ``tune.png`` (local outputs only). Returns name -> path."""
    publisher = publish.Publisher(spark, output, uuid.uuid4().hex)
    paths: dict[str, str] = {}
    try:
        for name, df in (tables or {}).items():
            paths[name] = publisher.write_table(df, name)
        for name, text in (files or {}).items():
            paths[name] = publisher.stage_file(name, text)
        publisher.publish()
    except BaseException:
        publisher.abort()
        raise
    if png is not None:
        path = publish.table_path(output, "tune.png")
        local = publish.local_path(path)
        if local is None:
            log.warning("tune.png is written to local outputs only; %s is remote", path)
        else:
            os.makedirs(os.path.dirname(local) or ".", exist_ok=True)
            with open(local, "wb") as fh:
                fh.write(png)
            paths["tune.png"] = path
    return paths


@dataclass
class TuneResult:
    """What :func:`run_tune` produced."""

    trials: list[Trial]
    best: Trial
    test_metrics: list[dict[str, Any]]
    outputs: dict[str, str]
    summary: dict[str, Any]


def run_tune(
    spark: SparkSession,
    ratings: DataFrame,
    base: Config,
    output: str,
    *,
    spec: TuneSpec,
    k: int = 10,
    test_fraction: float = 0.25,
    seed: int = 42,
    validation_fraction: float | None = None,
    validation_seed: int | None = None,
    compare: Mapping[str, Config] | None = None,
    baselines: Sequence[str] = E.BASELINES,
    evaluate_test: bool = True,
    timer: Timer | None = None,
) -> TuneResult:
    """Search ``spec`` on a validation split of train, write the results, then test the best once.

    ``ratings`` has ``user_id, item_id, rating`` (e.g. ``Ratings.df``); the
    interactions are the ratings >= ``base.ingest.min_rating``. The test split is
    :func:`~als_spark.evaluate.split_per_user_random` (``test_fraction``,
    ``seed``), the same as :func:`~als_spark.evaluate.run_evaluate` makes; only
    its train side reaches :func:`search`, which cuts the validation split from
    it with ``validation_fraction`` (default: ``test_fraction``) and
    ``validation_seed`` (default: ``seed + 1``; must differ from ``seed``).

    Writes ``output/leaderboard``, ``output/best.yaml`` and ``output/tune.png``
    as soon as the search ends; then, with ``evaluate_test``, runs
    :func:`~als_spark.evaluate.run_evaluate` on the test split for the best
    configuration (row ``tuned``, with ``baselines``) and each of ``compare``
    (name -> configuration; rows named by the key), and writes
    ``output/test_metrics``. ``output/tune.json`` records it all.
    """
    validation_fraction = test_fraction if validation_fraction is None else validation_fraction
    validation_seed = seed + 1 if validation_seed is None else validation_seed
    if validation_seed == seed:
        raise ConfigError(f"validation_seed must differ from the test split's seed ({seed})")
    E._check_k(k)
    E._check_fraction(test_fraction)
    E._require(ratings, S.USER_ID, S.ITEM_ID, S.RATING, purpose="run_tune")
    compare = dict(compare or {})
    for name, cfg in compare.items():
        if cfg.ingest.min_rating != base.ingest.min_rating:
            raise ConfigError(
                f"compare '{name}': ingest.min_rating {cfg.ingest.min_rating:g} differs from the base "
                f"configuration's {base.ingest.min_rating:g}; the test splits would differ"
            )
    unknown = [b for b in baselines if b not in E.BASELINES]
    if unknown:
        raise ConfigError(f"unknown baseline(s) {', '.join(map(repr, unknown))}; known: {', '.join(E.BASELINES)}")
    if BEST_MODEL in compare or set(compare) & set(E.BASELINES):
        raise ConfigError(f"compare names must not be '{BEST_MODEL}' or a baseline ({', '.join(E.BASELINES)})")
    timer = timer or Timer()
    outputs: dict[str, str] = {}

    interactions = ratings.transform(feedback.filter_min_rating, base.ingest.min_rating).select(
        S.USER_ID, S.ITEM_ID, S.RATING
    )
    # Only the train side is handed to the search; the test side is not even computed here.
    train, _ = E.split_per_user_random(interactions, test_fraction=test_fraction, seed=seed)
    train = train.cache()
    try:
        with timer.stage("tune_search"):
            done = search(
                spark, train, base, spec, k=k,
                validation_fraction=validation_fraction, validation_seed=validation_seed,
            )
    finally:
        train.unpersist()
    best = best_trial(done)
    log.info("tune: best trial %d: %s, validation %s@%d = %.4f",
             best.number, _describe(best.params), spec.metric, k, best.objective)

    with timer.stage("tune_write"):
        header = (
            f"Written by als-spark tune: trial {best.number} of {len(done)} ({spec.method} search),\n"
            f"validation {spec.metric}@{k} = {best.objective:.4f} "
            f"(validation split: fraction {validation_fraction:g}, seed {validation_seed}, of the train side of\n"
            f"the test split: fraction {test_fraction:g}, seed {seed}). Tuned: {', '.join(spec.space)}."
        )
        outputs.update(_write(
            spark, output,
            tables={"leaderboard": leaderboard(spark, done, metric=spec.metric, k=k).coalesce(1)},
            files={"best.yaml": config_yaml(best.config, header)},
            png=plot_png(done, _varied(spec) or list(spec.space), metric=spec.metric, k=k),
        ))

    test_rows: list[dict[str, Any]] = []
    if evaluate_test:
        runs = [(BEST_MODEL, best.config, tuple(baselines)), *[(name, cfg, ()) for name, cfg in compare.items()]]
        for name, cfg, run_baselines in runs:
            with timer.stage(f"tune_test_{name}"):
                _, rows = E.run_evaluate(
                    spark, feedback.to_interactions(ratings, cfg.ingest), cfg,
                    k=k, test_fraction=test_fraction, split="random", seed=seed, baselines=run_baselines,
                )
            for row in rows:
                test_rows.append({**row, "model": name if row["model"] == E.ALS_MODEL else row["model"]})
        # The tuned model, the comparisons, then the baselines.
        order = [BEST_MODEL, *compare, *baselines]
        test_rows.sort(key=lambda r: order.index(r["model"]))
        for row in test_rows:
            log.info("tune: test %s", ", ".join(
                [row["model"]] + [f"{m}@{k}={row[m]:.4f}" for m in E.METRIC_NAMES]))
        # One file, so the rows read back in this order.
        table = spark.createDataFrame([tuple(r[f.name] for f in E.METRICS.fields) for r in test_rows], E.METRICS).coalesce(1)
        outputs.update(_write(spark, output, tables={"test_metrics": table}))

    summary = {
        "spec": spec.to_dict(),
        "k": k,
        "test_split": {"method": "random", "test_fraction": test_fraction, "seed": seed},
        "validation_split": {"fraction_of_train": validation_fraction, "seed": validation_seed},
        "base_config": base.to_dict(),
        "trials": len(done),
        "stopped": sum(t.status == STATUS_STOPPED for t in done),
        "best": {
            "trial": best.number, "params": best.params, "objective": best.objective,
            "validation_metrics": best.metrics, "config": best.config.to_dict(),
        },
        "test_metrics": test_rows,
        "timings_seconds": dict(timer.seconds),
        "outputs": dict(outputs),
    }
    outputs.update(_write(spark, output, files={"tune.json": publish.to_json(summary)}))
    return TuneResult(trials=done, best=best, test_metrics=test_rows, outputs=outputs, summary=summary)
