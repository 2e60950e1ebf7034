"""Issue 9 §3: names live in homes that say what they are, and one name means one thing."""
import importlib

import pytest

import kexue

MOVED = {   # name -> its new home; `kexue.nn` keeps layers, losses and their functional forms only
    "build_tree": "kexue.metrics", "tree_to_spans": "kexue.metrics", "unlabeled_f1": "kexue.metrics",
    "retrieval_topk_accuracy": "kexue.metrics", "pmi_matrix": "kexue.corpus",
    "ODEStepper": "kexue.ode", "ParametricODE": "kexue.ode", "observations_to_grid": "kexue.ode",
    "masked_mse": "kexue.ode", "fit_ode": "kexue.ode",
}


@pytest.mark.parametrize("name, home", sorted(MOVED.items()))
def test_evaluation_and_ode_helpers_left_kexue_nn(name, home):
    import kexue.nn
    assert name not in kexue.nn.__all__ and not hasattr(kexue.nn, name)
    module = importlib.import_module(home)
    assert name in module.__all__ and callable(getattr(module, name))


def test_new_homes_load_lazily_from_a_bare_import():
    """In a fresh interpreter (no test has imported them yet): `import kexue` then `kexue.metrics...` works."""
    import subprocess
    import sys
    code = ("import sys, kexue\n"
            "assert 'kexue.metrics' not in sys.modules and 'kexue.ode' not in sys.modules\n"
            "assert kexue.metrics.unlabeled_f1 and kexue.ode.fit_ode and kexue.corpus.pmi_matrix\n"
            "assert {'metrics', 'ode', 'corpus'} <= set(dir(kexue))\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_gaussian_noise_means_one_thing():
    """`kexue.nn.GaussianNoise` (an NCE noise distribution) and `kexue.regularizers.GaussianNoise` (a layer) clashed."""
    import kexue.nn
    import kexue.regularizers
    import torch
    assert not hasattr(kexue.nn, "GaussianNoise")
    assert issubclass(kexue.regularizers.GaussianNoise, torch.nn.Module)
    proposal = kexue.nn.GaussianNoiseDistribution(std=2.0)
    assert not isinstance(proposal, torch.nn.Module) and hasattr(proposal, "log_prob")


def test_every_public_name_is_exported_once_per_package():
    for pkg in ("nn", "regularizers", "train", "optim", "metrics", "ode", "corpus", "ops"):
        module = importlib.import_module(f"kexue.{pkg}")
        names = module.__all__
        assert len(names) == len(set(names)), pkg
        missing = [n for n in names if not hasattr(module, n)]
        assert not missing, (pkg, missing)


def test_every_ops_helper_has_a_user_in_the_package():
    """Issue 9: six of ten `kexue.ops` functions were used nowhere; ops keeps only shared helpers with users."""
    from pathlib import Path

    import kexue.ops
    root = Path(kexue.__file__).parent
    sources = [p.read_text() for p in root.rglob("*.py") if p.name != "ops.py"]
    unused = [n for n in kexue.ops.__all__ if not any(n in s for s in sources)]
    assert not unused, f"kexue.ops helpers used nowhere in kexue: {unused}"
