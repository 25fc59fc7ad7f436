"""spark-submit entry point for the infer stage.

    spark-submit [spark options] jobs/infer.py --conf conf/cluster.yaml --run-date YYYY-MM-DD [--task T] [key=value ...]

Thin wiring only: argument parsing, session and logic live in the deepbatch package.
"""

import sys

from deepbatch.cli import main

if __name__ == "__main__":
    sys.exit(main(["infer", *sys.argv[1:]]))
