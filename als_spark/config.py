"""Typed pipeline configuration, parsed and validated at the edge.

A :class:`Config` is a tree of frozen dataclasses. :func:`load_config` builds one
from the built-in defaults, an optional YAML file and ``key=value`` overrides,
and rejects unknown keys and bad values with a :class:`~als_spark.errors.ConfigError`
that names the key. Library functions take the dataclasses, never raw dicts.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from als_spark import checks
from als_spark.checks import is_int, is_number
from als_spark.errors import ConfigError

CONFIDENCE_MODES = ("rating", "binary")
EXCLUDE_MODES = ("rated", "liked", "none")
#: The MovieLens text formats (fixed columns, integer ids) and the table formats (any columns).
MOVIELENS_FORMATS = ("ml-100k", "ml-1m", "csv")
TABLE_FORMATS = ("parquet", "orc", "json", "delimited", "table")
INPUT_FORMATS = ("auto", *MOVIELENS_FORMATS, *TABLE_FORMATS)
AGGREGATES = ("auto", "latest", "sum", "max", "count")
#: The roles ``ingest.columns`` maps to a source's columns, and the column each defaults to.
DEFAULT_COLUMNS: dict[str, str | None] = {
    "user": "user_id",
    "item": "item_id",
    "rating": "rating",
    "timestamp": "timestamp",
    "event": "event",
}
DEFAULT_ITEM_COLUMNS: dict[str, str | None] = {"item": "item_id", "title": "title"}
#: Valid ratings of a MovieLens file when ``ingest.rating_min`` / ``rating_max`` are null.
MOVIELENS_RATING_RANGE = (0.5, 5.0)


@dataclass(frozen=True)
class IngestConfig:
    """What the input is and how its rows become implicit feedback."""

    #: Input format; ``auto`` detects it from the file (MovieLens, Parquet, ORC, JSON, delimited).
    format: str = "auto"
    #: Spark reader options of a table format (for ``delimited``: header, delimiter, quote, ...).
    options: dict[str, Any] = field(default_factory=dict)
    #: Role -> the source's column (table formats): user, item, rating, timestamp, event.
    columns: dict[str, str | None] = field(default_factory=lambda: dict(DEFAULT_COLUMNS))
    #: Event type -> weight (e.g. view: 1, cart: 3, purchase: 5); ``None``: no event column.
    event_weights: dict[str, float] | None = None
    #: How repeated (user, item) rows combine: latest, sum, max or count; ``auto``: see :meth:`aggregation`.
    aggregate: str = "auto"
    #: Keep ratings >= this value as positive interactions (a rating column only).
    min_rating: float = 4.0
    #: Keep weights (from events, or 1 per row without ratings) >= this value; weights <= 0 never count.
    min_weight: float = 0.0
    #: ``rating``: confidence is the rating (or weight); ``binary``: every interaction is 1.
    confidence: str = "rating"
    #: Valid ratings lie in [rating_min, rating_max]; null: 0.5 to 5 for MovieLens files, else 0 to infinity.
    rating_min: float | None = None
    rating_max: float | None = None
    #: Fail (and publish nothing) when more than this share of input rows is rejected.
    max_rejected_fraction: float = 0.01

    @property
    def kind(self) -> str:
        """``rating`` (a rating column), ``event`` (weights by event type) or ``unary`` (each row weighs 1)."""
        if self.event_weights is not None:
            return "event"
        return "unary" if self.columns.get("rating") is None else "rating"

    def aggregation(self) -> str:
        """The rule for repeated (user, item) rows: ``latest`` for ratings, ``sum`` of the weights otherwise."""
        if self.aggregate != "auto":
            return self.aggregate
        return "latest" if self.kind == "rating" else "sum"

    def rating_range(self, fmt: str) -> tuple[float, float]:
        """Valid ratings of input format ``fmt``, with the null bounds filled in."""
        low, high = MOVIELENS_RATING_RANGE if fmt in MOVIELENS_FORMATS else (0.0, math.inf)
        return (
            low if self.rating_min is None else self.rating_min,
            high if self.rating_max is None else self.rating_max,
        )


@dataclass(frozen=True)
class ItemsConfig:
    """Where item titles come from (``--items``)."""

    #: ``auto`` (a MovieLens item file, Parquet, ORC, JSON or delimited) or one of the table formats.
    format: str = "auto"
    options: dict[str, Any] = field(default_factory=dict)
    #: Role -> column: item, title.
    columns: dict[str, str | None] = field(default_factory=lambda: dict(DEFAULT_ITEM_COLUMNS))


@dataclass(frozen=True)
class ALSConfig:
    """Hyper-parameters of ``pyspark.ml.recommendation.ALS(implicitPrefs=True)``.

    The defaults are the winner of ``als-spark tune`` on MovieLens 100k (ratings >= 4,
    confidence = rating, NDCG@10 on a validation split of train); see the README.
    Spark scales ``reg_param`` by each user's and item's interaction count (ALS-WR).
    """

    rank: int = 64
    max_iter: int = 15
    reg_param: float = 2.0
    alpha: float = 4.0
    seed: int = 42
    #: User and item block count; ``None`` derives it from the cluster's parallelism.
    num_blocks: int | None = None
    #: Checkpoint every this many iterations (truncates lineage on long runs).
    checkpoint_interval: int = 10
    #: Where checkpoints go; ``None`` uses a temporary directory removed after the fit.
    checkpoint_dir: str | None = None


@dataclass(frozen=True)
class RecommendConfig:
    """Top-N recommendations."""

    top_n: int = 10
    #: ``rated``: never recommend an item the user rated at all; ``liked``: only
    #: items rated >= ``ingest.min_rating`` are excluded; ``none``: exclude nothing.
    exclude: str = "rated"
    #: Added to every score: ``popularity_weight · ln(n)``, ``n`` the item's number of
    #: positive interactions (those ALS was fitted on). 0: plain ALS scores.
    popularity_weight: float = 0.0
    #: Only these items may be recommended (e.g. those in stock): a table of item ids, given as a
    #: path, or as ``{path: P | table: NAME, format: auto, options: {}, columns: {item: item_id}}``.
    allow_items: str | dict[str, Any] | None = None
    #: (user, item) pairs never to recommend: a path or ``{path | table, format, options,
    #: columns: {user: user_id, item: item_id}}``.
    deny: str | dict[str, Any] | None = None
    #: Item ids never recommended to anyone.
    deny_items: list[Any] = field(default_factory=list)
    #: Explain each recommendation by the user's this many most contributing items (0: no explanations).
    explain: int = 0


@dataclass(frozen=True)
class SimilarConfig:
    """Nearest neighbours by cosine similarity of the learned factors."""

    top_k: int = 10


@dataclass(frozen=True)
class TrackingConfig:
    """Experiment tracking (:mod:`als_spark.tracking`)."""

    #: Log ``run``, ``evaluate`` and ``tune`` to MLflow (also on with ``--mlflow`` or ``MLFLOW_TRACKING_URI``).
    mlflow: bool = False
    #: The MLflow experiment the runs go to.
    experiment: str = "als-spark"


@dataclass(frozen=True)
class Config:
    ingest: IngestConfig = field(default_factory=IngestConfig)
    als: ALSConfig = field(default_factory=ALSConfig)
    recommend: RecommendConfig = field(default_factory=RecommendConfig)
    similar: SimilarConfig = field(default_factory=SimilarConfig)
    items: ItemsConfig = field(default_factory=ItemsConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The configuration as plain nested dicts (what ``run.json`` records)."""
        return dataclasses.asdict(self)


#: The roles and default columns of the tables ``recommend.allow_items`` and ``recommend.deny`` name.
FILTER_COLUMNS: dict[str, dict[str, str]] = {
    "allow_items": {"item": "item_id"},
    "deny": {"user": "user_id", "item": "item_id"},
}
FILTER_FORMATS = ("auto", *TABLE_FORMATS)


_VALIDATORS: dict[str, Any] = {
    "ingest.format": checks.choice(INPUT_FORMATS),
    "ingest.options": checks.options,
    "ingest.columns": checks.columns(DEFAULT_COLUMNS, ("user", "item")),
    "ingest.event_weights": checks.event_weights,
    "ingest.aggregate": checks.choice(AGGREGATES),
    "ingest.min_rating": lambda v: None if is_number(v) else "must be a number",
    "ingest.min_weight": lambda v: None if is_number(v) and math.isfinite(v) else "must be a number",
    "ingest.confidence": checks.choice(CONFIDENCE_MODES),
    "ingest.rating_min": checks.optional_number,
    "ingest.rating_max": checks.optional_number,
    "ingest.max_rejected_fraction": lambda v: None if is_number(v) and 0 <= v <= 1 else "must be a number from 0 to 1",
    "als.rank": checks.positive_int,
    "als.max_iter": checks.positive_int,
    "als.reg_param": checks.non_negative_number,
    "als.alpha": checks.non_negative_number,
    "als.seed": lambda v: None if is_int(v) else "must be an integer",
    "als.num_blocks": lambda v: None if v is None else checks.positive_int(v),
    "als.checkpoint_interval": checks.positive_int,
    "als.checkpoint_dir": lambda v: None if v is None or (isinstance(v, str) and v) else "must be a path",
    "recommend.top_n": checks.positive_int,
    "recommend.exclude": checks.choice(EXCLUDE_MODES),
    "recommend.popularity_weight": lambda v: None if is_number(v) and math.isfinite(v) else "must be a number",
    "recommend.allow_items": checks.table_ref(FILTER_COLUMNS["allow_items"], FILTER_FORMATS),
    "recommend.deny": checks.table_ref(FILTER_COLUMNS["deny"], FILTER_FORMATS),
    "recommend.deny_items": checks.id_list,
    "recommend.explain": lambda v: None if is_int(v) and v >= 0 else "must be an integer >= 0",
    "similar.top_k": checks.positive_int,
    "items.format": checks.choice(("auto", "ml-100k", "ml-1m", "csv", *TABLE_FORMATS)),
    "items.options": checks.options,
    "items.columns": checks.columns(DEFAULT_ITEM_COLUMNS, ("item",)),
    "tracking.mlflow": lambda v: None if isinstance(v, bool) else "must be true or false",
    "tracking.experiment": lambda v: None if isinstance(v, str) and v.strip() else "must be a non-empty name",
}


def _sections() -> dict[str, type]:
    return {f.name: f.default_factory().__class__ for f in dataclasses.fields(Config)}  # type: ignore[operator]


def _unknown(kind: str, name: str, known: list[str]) -> ConfigError:
    hint = difflib.get_close_matches(name, known, n=1)
    suggestion = f" Did you mean '{hint[0]}'?" if hint else ""
    return ConfigError(f"unknown configuration {kind} '{name}'.{suggestion} Known {kind}s: {', '.join(sorted(known))}.")


def _merge(values: dict[str, dict[str, Any]], tree: Mapping[str, Any], source: str) -> None:
    if not isinstance(tree, Mapping):
        raise ConfigError(f"{source}: expected a mapping of sections ({', '.join(_sections())})")
    sections = _sections()
    for section, entries in tree.items():
        if section not in sections:
            raise _unknown("section", str(section), list(sections))
        if entries is None:
            continue
        if not isinstance(entries, Mapping):
            raise ConfigError(f"{source}: section '{section}' must be a mapping of key: value")
        keys = [f.name for f in dataclasses.fields(sections[section])]
        for key, value in entries.items():
            base, dot, sub = str(key).partition(".")  # --set ingest.columns.user=uid sets one entry
            if base not in keys:
                raise _unknown("key", f"{section}.{key}", [f"{section}.{k}" for k in keys])
            if not dot:
                values[section][key] = value
                continue
            current = values[section].get(base)
            if current is None:
                current = values[section][base] = {}
            if not isinstance(current, Mapping):
                raise ConfigError(f"{source}: {section}.{base} is not a mapping, so {section}.{key} cannot be set")
            values[section][base] = {**current, sub: value}


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``section.key=value``; the value is read as YAML (``20`` is an int)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or "." not in key:
        raise ConfigError(f"--set expects section.key=value (for example als.rank=20), got '{text}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{key}: cannot parse value '{raw}': {exc}") from None
    return key, value


def build_config(tree: Mapping[str, Any] | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Build a validated :class:`Config` from defaults, a mapping and ``key=value`` overrides."""
    values: dict[str, dict[str, Any]] = {name: {} for name in _sections()}
    if tree:
        _merge(values, tree, "configuration")
    for text in overrides:
        dotted, value = parse_override(text)
        section, _, key = dotted.partition(".")
        _merge(values, {section: {key: value}}, f"--set {text}")

    sections = _sections()
    built: dict[str, Any] = {}
    for section, cls in sections.items():
        defaults = dataclasses.asdict(cls())
        merged = {**defaults, **values[section]}
        floats = {f.name for f in dataclasses.fields(cls) if str(f.type).startswith("float")}
        for key, value in merged.items():
            if isinstance(defaults[key], dict) and defaults[key] and isinstance(value, Mapping):
                value = merged[key] = {**defaults[key], **value}  # a mapping of roles: name only what differs
            if key in floats and is_int(value):
                value = merged[key] = float(value)  # YAML reads "4" as an int
            problem = _VALIDATORS[f"{section}.{key}"](value)
            if problem:
                raise ConfigError(f"{section}.{key} {problem}, got {value!r}")
            if key == "event_weights" and value is not None:
                merged[key] = {str(k): float(v) for k, v in value.items()}
            elif isinstance(value, Mapping):
                merged[key] = dict(value)
        built[section] = cls(**merged)
    ingest = built["ingest"]
    if ingest.rating_min is not None and ingest.rating_max is not None and ingest.rating_min > ingest.rating_max:
        raise ConfigError(
            f"ingest.rating_min ({ingest.rating_min:g}) must not exceed ingest.rating_max ({ingest.rating_max:g})"
        )
    return Config(**built)


def read_yaml(path: str | os.PathLike, what: str = "configuration file") -> Any:
    """The YAML document in ``path``; ConfigError (``what`` names the file's role) if missing or invalid."""
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{what} not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {exc}") from None


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load ``path`` (YAML) over the built-in defaults, then apply ``overrides``."""
    tree: Any = None
    if path is not None:
        tree = read_yaml(path)
        if tree is not None and not isinstance(tree, Mapping):
            raise ConfigError(f"configuration file {path}: expected a mapping of sections at the top level")
    return build_config(tree, overrides)
