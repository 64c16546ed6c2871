"""``python -m als_spark ...``"""

from als_spark.cli import entry_point

entry_point()
