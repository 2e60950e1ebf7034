"""Every registered article experiment keeps the contract of kexue.experiments.base: its name is its module's,
it declares seeds for both modes and at least one Check on a metric, and run() refuses a bad mode or seed by
name before doing any work."""
import pytest

from kexue.experiments import MODES, Experiment
from kexue.experiments.registry import discover

EXPERIMENTS, FAILURES = discover()


def test_every_core_article_has_an_experiment_and_every_module_imports():
    assert len(EXPERIMENTS) >= 18 and FAILURES == {}


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_declares_the_contract(name):
    exp = EXPERIMENTS[name]
    assert isinstance(exp, Experiment) and exp.name == name
    assert set(exp.seeds) == set(MODES) and all(isinstance(n, int) and n >= 1 for n in exp.seeds.values())
    assert exp.checks and exp.claim and exp.setup and exp.url.startswith("https://kexue.fm/archives/")


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_run_refuses_a_bad_mode_or_seed_by_name(name):
    run = EXPERIMENTS[name].run
    with pytest.raises(ValueError, match="mode"):
        run("fast", 0)
    with pytest.raises((ValueError, TypeError), match="seed"):
        run("quick", -1)
