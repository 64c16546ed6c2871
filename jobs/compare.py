"""spark-submit entry: two configurations against each other, beyond seed noise.

spark-submit jobs/compare.py --input PATH --output DIR --config-a FILE --config-b FILE [options of `als-spark compare --help`]
"""

import sys

from als_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["compare", *sys.argv[1:]]))
