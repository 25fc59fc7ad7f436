"""spark-submit entry point for the materialize stage.

    spark-submit [spark options] jobs/materialize.py --conf conf/cluster.yaml --run-date YYYY-MM-DD [--task T] [key=value ...]

Thin wiring only: argument parsing, session and logic live in the deepbatch package.
"""

import sys

from deepbatch.cli import main

if __name__ == "__main__":
    sys.exit(main(["materialize", *sys.argv[1:]]))
