"""spark-submit entry point for the acquire stage.

    spark-submit [spark options] jobs/acquire.py --conf conf/cluster.yaml --run-date YYYY-MM-DD [key=value ...]

Thin wiring only: argument parsing, session and logic live in the deepbatch package.
"""

import sys

from deepbatch.cli import main

if __name__ == "__main__":
    sys.exit(main(["acquire", *sys.argv[1:]]))
