"""The search spec of ``als-spark tune``: what to vary, how, and the trials it gives.

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
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from als_spark.analysis.metrics import METRIC_NAMES
from als_spark.config import Config, build_config, is_int, is_number, read_yaml
from als_spark.errors import ConfigError

METHODS = ("grid", "random")


#: Keys a search may vary. ``ingest.min_rating`` is not one: it changes the interactions
#: and so the validation and test sets, and the objectives would no longer compare.
TUNABLE = (
    "als.rank",
    "als.max_iter",
    "als.reg_param",
    "als.alpha",
    "ingest.confidence",
    "recommend.popularity_weight",
)


DEFAULT_N_TRIALS = 20


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
            "method": self.method,
            "n_trials": self.n_trials,
            "seed": self.seed,
            "metric": self.metric,
            "repeats": self.repeats,
            "space": space,
            "early_stop": early,
        }


_SPEC_KEYS = ("method", "n_trials", "seed", "metric", "repeats", "space", "early_stop")


def _unknown(what: str, name: str, known: Sequence[str]) -> ConfigError:
    hint = difflib.get_close_matches(name, list(known), n=1)
    suggestion = f" Did you mean '{hint[0]}'?" if hint else ""
    return ConfigError(f"unknown {what} '{name}'.{suggestion} Known: {', '.join(known)}.")


def trial_config(base: Config, params: Mapping[str, Any]) -> Config:
    """``base`` with ``params`` (``section.key -> value``) set, validated by :func:`~als_spark.config.build_config`."""
    tree = base.to_dict()
    for key, value in params.items():
        section, _, name = key.partition(".")
        tree[section][name] = value
    return build_config(tree)


def param_value(cfg: Config, key: str) -> Any:
    """The value of ``section.key`` in ``cfg``."""
    section, _, name = key.partition(".")
    return getattr(getattr(cfg, section), name)


def check_space_value(key: str, value: Any) -> Any:
    """``value`` as the configuration stores it (e.g. 1 -> 1.0 for a float key); ConfigError naming the key."""
    try:
        return param_value(trial_config(Config(), {key: value}), key)
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
    if not is_int(n_trials) or n_trials < 1:
        raise ConfigError(f"tune.n_trials must be a positive integer, got {n_trials!r}")
    seed = tree.get("seed", 1)
    if not is_int(seed):
        raise ConfigError(f"tune.seed must be an integer, got {seed!r}")
    metric = tree.get("metric", "ndcg")
    if metric not in METRIC_NAMES:
        raise ConfigError(f"tune.metric must be one of {', '.join(METRIC_NAMES)}, got {metric!r}")
    repeats = tree.get("repeats", 1)
    if not is_int(repeats) or repeats < 1:
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
            checked = tuple(check_space_value(key, v) for v in choices)
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
                raise _unknown(
                    "tune key", f"tune.early_stop.{key}", ["tune.early_stop.probe_iter", "tune.early_stop.margin"]
                )
        probe, margin = early.get("probe_iter", 5), early.get("margin", 0.01)
        if not is_int(probe) or probe < 1:
            raise ConfigError(f"tune.early_stop.probe_iter must be a positive integer, got {probe!r}")
        if not is_number(margin) or margin < 0:
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
    if not is_number(low) or not is_number(high) or low > high:
        raise ConfigError(f"tune.space.{key}: a range needs numbers low <= high, got low={low!r}, high={high!r}")
    if not isinstance(use_log, bool):
        raise ConfigError(f"tune.space.{key}.log must be true or false, got {use_log!r}")
    if use_log and low <= 0:
        raise ConfigError(f"tune.space.{key}: a log range needs low > 0, got {low!r}")
    if isinstance(param_value(Config(), key), str):
        raise ConfigError(f"tune.space.{key}: takes a list of values, not a range")
    for bound in (low, high):
        check_space_value(key, int(round(bound)) if is_int(param_value(Config(), key)) else bound)
    return Range(low=float(low), high=float(high), log=use_log)


def load_spec(path: str | os.PathLike) -> TuneSpec:
    """Read a search spec from a YAML file (see :func:`parse_spec`)."""
    return parse_spec(read_yaml(path, "tune spec file"))


def trials(spec: TuneSpec) -> list[dict[str, Any]]:
    """The parameter sets the search will run, in order (``section.key -> value``)."""
    keys = list(spec.space)
    choices = {k: v for k, v in spec.space.items() if not isinstance(v, Range)}
    if spec.method == "grid":  # parse_spec allows only lists with grid
        return [dict(zip(keys, combo)) for combo in itertools.product(*[choices[k] for k in keys])]
    rng = random.Random(spec.seed)
    if len(choices) == len(keys):
        # Distinct points: sample indices of the product without replacement, decode mixed-radix.
        sizes = [len(choices[k]) for k in keys]
        total = math.prod(sizes)
        picked = rng.sample(range(total), min(spec.n_trials, total))
        out = []
        for index in picked:
            params: dict[str, Any] = {}
            for key, size in zip(reversed(keys), reversed(sizes)):
                index, pos = divmod(index, size)
                params[key] = choices[key][pos]
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
                params[key] = int(round(x)) if is_int(param_value(Config(), key)) else float(f"{x:.4g}")
            else:
                params[key] = rng.choice(values)
        out.append(params)
    return out
