"""spark-submit entry: the `ingest` stage on its own.

spark-submit jobs/ingest.py --output DIR [options of `als-spark ingest --help`]
"""

import sys

from als_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", *sys.argv[1:]]))
