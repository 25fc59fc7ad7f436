"""Pack the Python environment the executors run in: ``make package`` calls this.

    python tools/package_env.py --venv .venv --wheel dist/deepbatch-*.whl --out dist/deepbatch-env.tar.gz

The archive is the venv packed with venv-pack (relocatable: shebangs and prefixes
rewritten) minus what executors never use (Spark's jars: the cluster brings its
own Spark; the development install of deepbatch), plus deepbatch itself installed
from its wheel, so executors import the packaged release and nothing from the
machine it was built on. Ship it with

    spark-submit --archives dist/deepbatch-env.tar.gz#env --conf spark.pyspark.python=./env/bin/python ...

A venv's ``bin/python`` links to the interpreter it was created from, so the
executors need the same Python (3.11 here) at the same path, as with any venv-pack
archive.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--venv", type=Path, required=True)
    ap.add_argument("--wheel", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--compress-level", type=int, default=1, help="gzip level for .tar.gz (1: fast)")
    args = ap.parse_args()
    import venv_pack

    t0 = time.monotonic()
    site = f"lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="deepbatch-pack-") as tmp:
        tar_path = Path(tmp) / "env.tar"
        venv_pack.pack(
            prefix=str(args.venv),
            output=str(tar_path),
            format="tar",
            filters=[
                ("exclude", f"{site}/__editable__*"),
                ("exclude", f"{site}/deepbatch-*.dist-info/*"),
                ("exclude", f"{site}/pyspark/jars/*"),
                ("exclude", f"{site}/pyspark/examples/*"),
            ],
            verbose=False,
        )
        # deepbatch from its wheel (a wheel is a zip laid out as site-packages).
        unpacked = Path(tmp) / "wheel"
        with zipfile.ZipFile(args.wheel) as whl:
            whl.extractall(unpacked)
        with tarfile.open(tar_path, "a") as tar:
            for path in sorted(unpacked.rglob("*")):
                tar.add(path, arcname=f"{site}/{path.relative_to(unpacked)}", recursive=False)
        if args.out.suffixes[-2:] == [".tar", ".gz"] or args.out.suffix == ".tgz":
            with open(tar_path, "rb") as src, gzip.open(args.out, "wb", compresslevel=args.compress_level) as dst:
                shutil.copyfileobj(src, dst, 16 << 20)
        else:
            shutil.move(str(tar_path), args.out)
    size = args.out.stat().st_size / 2**20
    print(f"packed {args.venv} + {args.wheel.name} into {args.out} ({size:,.0f} MB) in {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
