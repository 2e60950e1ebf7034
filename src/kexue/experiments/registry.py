"""Finding the article experiments: every module of `kexue.experiments` that defines `EXPERIMENT`.

A module that fails to import does not stop the others: it is kept as an `ImportFailure` (its traceback), which
the runner reports as a failed experiment.
"""
from __future__ import annotations

import importlib
import pkgutil
import traceback
from dataclasses import dataclass

from .base import Experiment

__all__ = ["ImportFailure", "discover", "INFRASTRUCTURE"]

# the package's own machinery, not articles
INFRASTRUCTURE = frozenset({"base", "registry", "runner", "report", "plots", "summary"})


@dataclass(frozen=True)
class ImportFailure:
    """An experiment module that could not be imported (or whose EXPERIMENT is malformed)."""
    name: str
    error: str          # the formatted traceback or the reason


def discover(package: str = "kexue.experiments") -> tuple[dict[str, Experiment], dict[str, ImportFailure]]:
    """(experiments by name, import failures by module name), both sorted by name.

    EXPERIMENT.name must equal the module's name (it is what the command line uses), which also makes names
    unique; a mismatch is reported as a failure of that module rather than silently shadowing another one."""
    pkg = importlib.import_module(package)
    found: dict[str, Experiment] = {}
    failed: dict[str, ImportFailure] = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        name = info.name
        if name.startswith("_") or name in INFRASTRUCTURE or info.ispkg:
            continue
        try:
            module = importlib.import_module(f"{package}.{name}")
        except BaseException as e:       # noqa: BLE001 -- any import-time crash is that experiment's failure
            if isinstance(e, KeyboardInterrupt):
                raise
            failed[name] = ImportFailure(name, traceback.format_exc())
            continue
        exp = getattr(module, "EXPERIMENT", None)
        if exp is None:
            continue                     # a helper module, not an article
        if not isinstance(exp, Experiment):
            failed[name] = ImportFailure(name, f"{package}.{name}.EXPERIMENT must be an Experiment, "
                                               f"got {type(exp).__name__}")
        elif exp.name != name:
            failed[name] = ImportFailure(name, f"{package}.{name}.EXPERIMENT.name must equal the module name "
                                               f"{name!r}, got {exp.name!r}")
        else:
            found[name] = exp
    return found, failed
