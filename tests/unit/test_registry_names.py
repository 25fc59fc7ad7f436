"""No modality or predictor-core name is compared outside the registry (lib/deepbatch/modality/), and no source kind
outside the source readers (lib/deepbatch/sources/).

What varies by modality is a member of its contract; code elsewhere asks the registry. This scan fails on
``x == "video"``, ``x in ("image", ...)``, ``"image" if ... else ...`` and tables keyed by several modality names.
"""

from __future__ import annotations

import ast

import pytest

from deepbatch.modality import MODALITIES
from tests.conftest import REPO

pytestmark = pytest.mark.unit

LIB = REPO / "lib" / "deepbatch"
REGISTRY = LIB / "modality"


def registry_names() -> frozenset[str]:
    names = set(MODALITIES)
    for m in MODALITIES.values():
        names |= set(m.cores) | set(m.pretrained)
    return frozenset(names)


def _named(node: ast.AST | None, names: frozenset[str]) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value in names
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(_named(e, names) for e in node.elts)
    return False


def _subject(node: ast.AST) -> str:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""


def comparisons(source: str, names: frozenset[str], subject: str = "") -> list[tuple[int, str]]:
    """(line, code) of every comparison with, choice of, or table keyed by the given names; with ``subject``, only
    comparisons of a name or attribute ending in it (``src.kind == "csv"``, not ``fmt == "json"``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        compared = isinstance(node, ast.Compare) and any(_named(x, names) for x in (node.left, *node.comparators)) and (
            not subject or any(_subject(x).endswith(subject) for x in (node.left, *node.comparators)))
        hit = compared or (
            isinstance(node, ast.IfExp) and (_named(node.body, names) or _named(node.orelse, names))) or (
            isinstance(node, ast.Dict) and sum(_named(k, names) for k in node.keys) >= 2)
        if hit:
            found.append((node.lineno, ast.get_source_segment(source, node) or ""))
    return found


def test_no_modality_or_core_name_is_compared_outside_the_registry() -> None:
    names = registry_names()
    hits = [f"{f.relative_to(REPO)}:{line}: {code}" for f in sorted(LIB.rglob("*.py")) if REGISTRY not in f.parents
            for line, code in comparisons(f.read_text(encoding="utf-8"), names)]
    assert hits == []


def test_no_source_kind_is_compared_outside_the_source_readers() -> None:
    """What varies by source kind is a member of its reader (deepbatch.sources); "files" is also a role, so kinds are
    the record formats and the sources that are not files."""
    from deepbatch.sources import SOURCE_KINDS

    kinds = frozenset(SOURCE_KINDS) - {"files"}
    hits = [f"{f.relative_to(REPO)}:{line}: {code}" for f in sorted(LIB.rglob("*.py")) if (LIB / "sources") not in f.parents
            for line, code in comparisons(f.read_text(encoding="utf-8"), kinds, subject="kind")]
    assert hits == []


def test_the_scan_finds_each_kind_of_comparison() -> None:
    names = frozenset({"image", "video", "text"})
    code = ('a = kind == "video"\nb = m in ("image", "x")\nc = "image" if x else "text"\nd = {"image": 1, "video": 2}\n'
            'e = {"type": "p", "text": "fine"}\nf = role == "files"\n')
    assert [line for line, _ in comparisons(code, names)] == [1, 2, 3, 4]
    assert [line for line, _ in comparisons('a = src.kind == "csv"\nb = fmt == "csv"\n', frozenset({"csv"}), "kind")] == [1]
    assert {"image", "text", "video", "imagenet", "hf_text"} <= registry_names()
