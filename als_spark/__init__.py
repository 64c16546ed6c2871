"""als-spark: implicit-feedback ALS recommendations and similarity tables on Spark.

The pipeline's flow, one module a stage: :mod:`~als_spark.ingest` (validated
ratings) → :mod:`~als_spark.feedback` (implicit interactions) →
:mod:`~als_spark.model` (checkpointed ALS fit) → :mod:`~als_spark.topk` (the
blocked top-k) → :mod:`~als_spark.recommend` and :mod:`~als_spark.similarity`
→ :mod:`~als_spark.publish` (all tables or none); :mod:`~als_spark.pipeline`
runs them as jobs. :mod:`als_spark.api` is the Python API re-exported here;
:mod:`als_spark.analysis` holds the evaluation and experiment tools and
:mod:`als_spark.cli` the command line, and the core imports neither.

The API names are imported on first use, so ``import als_spark`` (the version,
the zip builder, ``als-spark --help``) does not import Spark.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "AlsSparkError",
    "Config",
    "ConfigError",
    "DatasetError",
    "InputDataError",
    "Recommender",
    "__version__",
    "fit",
    "load",
    "load_config",
    "run",
]

#: Public name -> the module that defines it.
_EXPORTS = {
    "Recommender": "als_spark.api",
    "fit": "als_spark.api",
    "load": "als_spark.api",
    "run": "als_spark.api",
    "Config": "als_spark.config",
    "load_config": "als_spark.config",
    "AlsSparkError": "als_spark.errors",
    "ConfigError": "als_spark.errors",
    "DatasetError": "als_spark.errors",
    "InputDataError": "als_spark.errors",
}

if TYPE_CHECKING:
    from als_spark.api import Recommender, fit, load, run
    from als_spark.config import Config, load_config
    from als_spark.errors import AlsSparkError, ConfigError, DatasetError, InputDataError


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'als_spark' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
