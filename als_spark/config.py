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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import yaml

from als_spark.errors import ConfigError

CONFIDENCE_MODES = ("rating", "binary")
EXCLUDE_MODES = ("rated", "liked", "none")
INPUT_FORMATS = ("auto", "ml-100k", "ml-1m", "csv")


@dataclass(frozen=True)
class IngestConfig:
    """How ratings become implicit feedback."""

    #: Keep ratings >= this value as positive interactions.
    min_rating: float = 4.0
    #: ``rating``: confidence is the rating value; ``binary``: every interaction is 1.
    confidence: str = "rating"
    #: Input format; ``auto`` detects it from the file.
    format: str = "auto"
    #: Valid ratings lie in [rating_min, rating_max]; others are rejected (MovieLens: 0.5 to 5).
    rating_min: float = 0.5
    rating_max: float = 5.0
    #: Fail (and publish nothing) when more than this share of input lines is rejected.
    max_rejected_fraction: float = 0.01


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


@dataclass(frozen=True)
class SimilarConfig:
    """Nearest neighbours by cosine similarity of the learned factors."""

    top_k: int = 10


@dataclass(frozen=True)
class Config:
    ingest: IngestConfig = field(default_factory=IngestConfig)
    als: ALSConfig = field(default_factory=ALSConfig)
    recommend: RecommendConfig = field(default_factory=RecommendConfig)
    similar: SimilarConfig = field(default_factory=SimilarConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The configuration as plain nested dicts (what ``run.json`` records)."""
        return dataclasses.asdict(self)


def is_int(value: Any) -> TypeGuard[int]:
    """An ``int`` that is not a ``bool`` (YAML's ``true`` is not a number here)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> TypeGuard[int | float]:
    """An ``int`` or ``float`` that is not a ``bool``."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_int(value: Any) -> str | None:
    return None if is_int(value) and value > 0 else "must be a positive integer"


def _choice(options: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in options else "must be one of " + ", ".join(options)

    return check


def _non_negative_number(value: Any) -> str | None:
    return None if is_number(value) and value >= 0 else "must be a number >= 0"


_VALIDATORS: dict[str, Any] = {
    "ingest.min_rating": lambda v: None if is_number(v) else "must be a number",
    "ingest.confidence": _choice(CONFIDENCE_MODES),
    "ingest.format": _choice(INPUT_FORMATS),
    "ingest.rating_min": lambda v: None if is_number(v) else "must be a number",
    "ingest.rating_max": lambda v: None if is_number(v) else "must be a number",
    "ingest.max_rejected_fraction": lambda v: None if is_number(v) and 0 <= v <= 1 else "must be a number from 0 to 1",
    "als.rank": _positive_int,
    "als.max_iter": _positive_int,
    "als.reg_param": _non_negative_number,
    "als.alpha": _non_negative_number,
    "als.seed": lambda v: None if is_int(v) else "must be an integer",
    "als.num_blocks": lambda v: None if v is None else _positive_int(v),
    "als.checkpoint_interval": _positive_int,
    "als.checkpoint_dir": lambda v: None if v is None or (isinstance(v, str) and v) else "must be a path",
    "recommend.top_n": _positive_int,
    "recommend.exclude": _choice(EXCLUDE_MODES),
    "recommend.popularity_weight": lambda v: None if is_number(v) and math.isfinite(v) else "must be a number",
    "similar.top_k": _positive_int,
}


def _sections() -> dict[str, type]:
    return {f.name: f.default_factory().__class__ for f in dataclasses.fields(Config)}  # type: ignore[operator]


def _unknown(kind: str, name: str, known: list[str]) -> ConfigError:
    hint = difflib.get_close_matches(name, known, n=1)
    suggestion = f" Did you mean '{hint[0]}'?" if hint else ""
    return ConfigError(f"unknown configuration {kind} '{name}'.{suggestion} Known {kind}s: {', '.join(sorted(known))}.")


def _merge(values: dict[str, dict[str, Any]], tree: Mapping[str, Any], source: str) -> None:
    if not isinstance(tree, Mapping):
        raise ConfigError(f"{source}: expected a mapping of sections (ingest, als, recommend, similar)")
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
            if key not in keys:
                raise _unknown("key", f"{section}.{key}", [f"{section}.{k}" for k in keys])
            values[section][key] = value


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
        for key, value in merged.items():
            if isinstance(defaults[key], float) and is_int(value):
                value = merged[key] = float(value)  # YAML reads "4" as an int
            problem = _VALIDATORS[f"{section}.{key}"](value)
            if problem:
                raise ConfigError(f"{section}.{key} {problem}, got {value!r}")
        built[section] = cls(**merged)
    ingest = built["ingest"]
    if ingest.rating_min > ingest.rating_max:
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
