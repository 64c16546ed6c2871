"""als-spark: implicit-feedback ALS recommendations and similarity tables on Spark."""

__version__ = "0.1.0"
