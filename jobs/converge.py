"""spark-submit entry: one configuration at several iteration counts.

spark-submit jobs/converge.py --input PATH --output DIR --iterations 15,50,100 [options of `als-spark converge --help`]
"""

import sys

from als_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["converge", *sys.argv[1:]]))
