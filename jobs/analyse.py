"""spark-submit entry point for the analyse stage.

    spark-submit [spark options] jobs/analyse.py --conf conf/cluster.yaml --run-date YYYY-MM-DD [key=value ...]

Thin wiring only: argument parsing, session and logic live in the deepbatch package.
"""

import sys

from deepbatch.cli import main

if __name__ == "__main__":
    sys.exit(main(["analyse", *sys.argv[1:]]))
