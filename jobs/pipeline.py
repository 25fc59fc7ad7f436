"""spark-submit entry point for the whole pipeline (acquire, clean, integrate, analyse, materialize, train).

    spark-submit [spark options] jobs/pipeline.py --conf conf/cluster.yaml --run-date YYYY-MM-DD [key=value ...]

Thin wiring only: argument parsing, session and logic live in the deepbatch package.
"""

import sys

from deepbatch.cli import main

if __name__ == "__main__":
    sys.exit(main(["pipeline", *sys.argv[1:]]))
