"""spark-submit entry: hyper-parameter search.

spark-submit jobs/tune.py --input PATH --spec conf/tune.yaml --output DIR [options of `als-spark tune --help`]
"""

import sys

from als_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["tune", *sys.argv[1:]]))
