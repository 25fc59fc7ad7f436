"""Coverage-guided fuzzing of one target with atheris (libFuzzer), growing its corpus under tests/fuzz/corpus/<target>/.

    python -m tests.fuzz.run image_probe --seconds 60

A crash (an exception, or a broken contract) stops the run and leaves the input under tests/fuzz/crashes/; add it to
the target's seeds once fixed, so the seeded property tests keep it covered. ``make fuzz`` runs every target.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["deepbatch"]):
    import deepbatch.media.image
    import deepbatch.media.text
    import deepbatch.media.video
    import deepbatch.sources.records
    import deepbatch.sources.survey  # noqa: F401

from tests.fuzz.targets import CORPUS, TARGETS

CRASHES = Path(__file__).parent / "crashes"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("target", choices=sorted(TARGETS))
    p.add_argument("--seconds", type=int, default=60)
    p.add_argument("--max-len", type=int, default=65536)
    args, rest = p.parse_known_args()
    corpus = CORPUS / args.target
    corpus.mkdir(parents=True, exist_ok=True)
    CRASHES.mkdir(exist_ok=True)
    target = TARGETS[args.target]
    argv = [sys.argv[0], str(corpus), f"-max_total_time={args.seconds}", f"-max_len={args.max_len}", "-rss_limit_mb=4096",
            f"-artifact_prefix={CRASHES}/{args.target}-", "-print_final_stats=1", *rest]
    atheris.Setup(argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
