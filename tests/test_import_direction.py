"""kexue.generation knows models only through the decoding protocol (kexue.models.decoding): no module of
kexue/generation imports a model family (transformer, gpt, bert, t5, ...), at top level or inside a function,
and none guesses the model kind by its attributes."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

GENERATION = Path(__file__).resolve().parents[1] / "src" / "kexue" / "generation"
ALLOWED = {"kexue.models.decoding"}


def _imports(path: Path) -> list[tuple[int, str]]:
    """Absolute names of every module (and `from X import name` target) imported by the file."""
    package = ["kexue", "generation"]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            out.append((node.lineno, module))
            out += [(node.lineno, f"{module}.{a.name}") for a in node.names]     # `from ..models import gpt`
    return out


def _violations(path: Path) -> list[str]:
    bad = []
    for line, name in _imports(path):
        if name == "kexue.models" or not name.startswith("kexue.models."):
            continue
        if not any(name == ok or name.startswith(ok + ".") for ok in ALLOWED):
            bad.append(f"{path.name}:{line} imports {name}")
    return bad


FILES = sorted(GENERATION.glob("*.py"))


def test_the_generation_package_is_there():
    assert len(FILES) >= 5


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_generation_imports_no_model_family(path):
    assert _violations(path) == []


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_generation_does_not_guess_the_model_kind(path):
    text = path.read_text()
    assert "hasattr(model" not in text and "application ==" not in text


def test_the_checker_catches_a_family_import(tmp_path):
    """The reader sees relative, absolute and lazy imports (so the tests above can fail)."""
    probe = tmp_path / "probe.py"
    probe.write_text("from ..models.decoding import DecodingModel\n"
                     "def f():\n    from ..models.t5 import T5\n"
                     "import kexue.models.gpt\nfrom ..models import transformer\n")
    assert sorted(v.split(" imports ")[1] for v in _violations(probe)) == [
        "kexue.models.gpt", "kexue.models.t5", "kexue.models.t5.T5", "kexue.models.transformer"]
