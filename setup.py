"""deepbatch: distributed deep learning on big data with Apache Spark."""
from __future__ import annotations

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
version: dict[str, str] = {}
exec((ROOT / "lib" / "deepbatch" / "_version.py").read_text(), version)

setup(
    name="deepbatch",
    version=version["__version__"],
    description="Spark ETL, Petastorm datasets, Horovod training and pandas-UDF batch inference",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # models/data holds the ImageNet class names: a data-only package, declared so setuptools ships it.
    packages=[*find_packages("lib"), "deepbatch.schemas", "deepbatch.models.data"],
    package_dir={"deepbatch": "lib/deepbatch", "deepbatch.schemas": "schemas"},
    package_data={"deepbatch": ["log4j2.properties"], "deepbatch.models.data": ["*.txt", "*.md"]},
    include_package_data=True,
    install_requires=[
        # torch is deliberately not listed here: a plain `torch` requirement pulls a
        # multi-GB CUDA build. Install the right build first (see README).
        "pyspark>=3.5,<4.1",
        "pyarrow>=10,<15",
        "numpy<2",
        "pandas<3",
        "pyyaml",
        "pydantic>=2,<3",
        "matplotlib",
        "opencv-python-headless>=4.9",
    ],
    extras_require={
        "ml": ["petastorm==0.13.1", "transformers>=5,<6", "safetensors", "pillow"],
        "dev": ["pytest", "chispa", "duckdb", "polars"],
        # The Airflow side of scheduling (jobs/airflow/deepbatch_dag.py); tested in its own venv.
        "airflow": ["apache-airflow>=3,<4", "apache-airflow-providers-apache-spark>=5"],
    },
    entry_points={
        "console_scripts": ["deepbatch=deepbatch.cli:main"],
        # The modality registry (deepbatch.modality): a package of its own adds a line like these to this group.
        "deepbatch.modalities": [
            "image = deepbatch.modality.image:MODALITY",
            "text = deepbatch.modality.text:MODALITY",
            "video = deepbatch.modality.video:MODALITY",
        ],
    },
)
