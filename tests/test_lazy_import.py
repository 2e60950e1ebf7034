"""`import kexue` alone gives every subpackage on first attribute access (checked in a fresh interpreter, where
no other test has imported them yet)."""
import subprocess
import sys

import pytest


def test_subpackages_resolve_after_bare_import():
    code = ("import sys, kexue\n"
            "assert 'kexue.train' not in sys.modules\n"
            "assert kexue.optim.WeightDecay and kexue.train.Trainer and kexue.generation.generate\n"
            "assert kexue.regularizers and kexue.sim and kexue.explain and kexue.compress and kexue.data\n"
            "assert 'optim' in dir(kexue)\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_unknown_attribute_is_an_attribute_error():
    import kexue
    with pytest.raises(AttributeError, match="no attribute 'optimizers'"):
        kexue.optimizers
