"""spark-submit entry: the `recommend` stage on its own.

spark-submit jobs/recommend.py --output DIR [options of `als-spark recommend --help`]
"""

import sys

from als_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["recommend", *sys.argv[1:]]))
