"""Arrows point down (docs/architecture.md): nothing in the package imports the command line, and the
low-level modules (ops, _validate, nn, data, datasets, tokenizers) import no engine (train, generation, explain,
compress, cli)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "kexue"
ENGINES = ("kexue.train", "kexue.generation", "kexue.explain", "kexue.compress", "kexue.cli")
LOW = ("ops.py", "_validate.py", "nn", "data", "datasets", "tokenizers")


def imported(path: Path, root: Path = SRC) -> set[str]:
    """Absolute module names a file imports (relative imports resolved against its package)."""
    package = ["kexue", *path.relative_to(root).parts[:-1]]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names |= {module} | {f"{module}.{a.name}" for a in node.names}
    return names


def _files(*roots: str) -> list[Path]:
    out = []
    for r in roots:
        p = SRC / r
        out += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return out


@pytest.mark.parametrize("path", [p for p in SRC.rglob("*.py") if p.name != "cli.py"], ids=str)
def test_nothing_imports_the_command_line(path):
    assert not any(n == "kexue.cli" or n.startswith("kexue.cli.") for n in imported(path))


@pytest.mark.parametrize("path", _files(*LOW), ids=lambda p: str(p.relative_to(SRC)))
def test_low_level_modules_import_no_engine(path):
    bad = sorted(n for n in imported(path) if n.startswith(ENGINES))
    assert bad == [], f"{path.relative_to(SRC)} imports {bad}"


def test_the_reader_resolves_relative_imports(tmp_path):
    (tmp_path / "nn").mkdir()
    probe = tmp_path / "nn" / "probe.py"
    probe.write_text("from ..train import Trainer\nfrom . import crf\nimport kexue.cli\n")
    assert {"kexue.train", "kexue.train.Trainer", "kexue.nn.crf", "kexue.cli"} <= imported(probe, tmp_path)
