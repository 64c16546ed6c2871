"""spark-submit entry: the `train` stage on its own.

spark-submit jobs/train.py --output DIR [options of `als-spark train --help`]
"""

import sys

from als_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
