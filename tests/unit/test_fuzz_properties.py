"""Seeded property tests over the fuzz targets: any bytes, and mutations of each target's seed corpus (valid files cut,
flipped, spliced), end in a value or a reason, never an exception. The long, coverage-guided runs are ``make fuzz``."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.targets import TARGETS, seeds

pytestmark = pytest.mark.unit

# Examples per target: the probes through OpenCV and the scanners through files cost more per example.
BUDGET = {"image_probe": 400, "video_probe": 40, "text_normalise": 300, "jsonl_scan": 150, "json_scan": 150, "csv_scan": 150,
          "parquet_scan": 100, "gzip_scan": 100}


@st.composite
def mutated(draw: st.DrawFn, target: str) -> bytes:
    """A seed with a few edits: a byte flipped, a cut, random bytes spliced in, or two seeds joined."""
    pool = seeds(target) or [b""]
    data = bytearray(draw(st.sampled_from(pool)))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["flip", "cut", "splice", "join"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif op == "cut":
            data = data[:at]
        elif op == "splice":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            data += draw(st.sampled_from(pool))
    return bytes(data)


def _settings(target: str) -> settings:
    return settings(max_examples=BUDGET[target], derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_target_has_seeds_and_takes_them_whole(target: str) -> None:
    assert seeds(target), f"tests/fuzz/corpus/{target}/ holds no seeds: run python -m tests.fuzz.make_corpus"
    for data in seeds(target):
        TARGETS[target](data)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_mutated_seeds_end_in_a_value_or_a_reason(target: str) -> None:
    @_settings(target)
    @given(mutated(target))
    def prop(data: bytes) -> None:
        TARGETS[target](data)

    prop()


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_arbitrary_bytes_end_in_a_value_or_a_reason(target: str) -> None:
    @_settings(target)
    @given(st.binary(max_size=4096))
    def prop(data: bytes) -> None:
        TARGETS[target](data)

    prop()
