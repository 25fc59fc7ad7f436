"""spark-submit entry point for the integrate stage.

    spark-submit [spark options] jobs/integrate.py --conf conf/cluster.yaml --run-date YYYY-MM-DD [key=value ...]

Thin wiring only: argument parsing, session and logic live in the deepbatch package.
"""

import sys

from deepbatch.cli import main

if __name__ == "__main__":
    sys.exit(main(["integrate", *sys.argv[1:]]))
