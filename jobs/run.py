"""spark-submit entry: the whole pipeline.

spark-submit jobs/run.py --input PATH --output DIR [--config FILE] [--set key=value ...]
"""

import sys

from als_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
