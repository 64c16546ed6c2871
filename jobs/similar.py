"""spark-submit entry: the `similar` stage on its own.

spark-submit jobs/similar.py --output DIR [options of `als-spark similar --help`]
"""

import sys

from als_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["similar", *sys.argv[1:]]))
