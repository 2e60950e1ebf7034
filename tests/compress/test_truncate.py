"""truncate_layers: successor initialisation from the first / every k-th layer (https://kexue.fm/archives/7575)."""
import pytest
import torch

import kexue
from kexue.compress import truncate_layers

BERT = dict(model_type="bert", vocab_size=50, hidden_size=16, num_hidden_layers=4, num_attention_heads=2,
            intermediate_size=24, max_position_embeddings=16)
ALBERT = dict(model_type="albert", vocab_size=50, embedding_size=8, hidden_size=16, num_hidden_layers=4,
              num_attention_heads=2, intermediate_size=24, max_position_embeddings=16, num_hidden_groups=1)


@pytest.mark.parametrize("cfg", [BERT, ALBERT])
def test_first_layers_equal_loading_with_num_layers(cfg, tmp_path):
    """truncate_layers(model, 2) == build_transformer_model(checkpoint, num_layers=2), also after a save."""
    full = kexue.build_transformer_model(config=cfg, with_pool=True).eval()
    full.save_pretrained(tmp_path / "full")
    loaded = kexue.build_transformer_model(tmp_path / "full", with_pool=True, num_layers=2).eval()
    small = truncate_layers(full, 2)
    ids = torch.randint(0, 50, (2, 9))
    with torch.no_grad():
        a, b = small(ids), loaded(ids)
    assert small.num_layers == 2 and small.config.num_layers == 2 and full.num_layers == 4
    assert sum(p.numel() for p in small.parameters()) == sum(p.numel() for p in loaded.parameters())
    torch.testing.assert_close(a.last_hidden_state, b.last_hidden_state, rtol=0, atol=0)
    torch.testing.assert_close(a.pooled, b.pooled, rtol=0, atol=0)
    small.save_pretrained(tmp_path / "small")
    again = kexue.build_transformer_model(tmp_path / "small", with_pool=True).eval()
    assert again.num_layers == 2
    torch.testing.assert_close(again(ids).last_hidden_state, a.last_hidden_state, rtol=0, atol=0)


def test_every_k_keeps_layers_zero_k_2k_and_copies():
    full = kexue.build_transformer_model(config=dict(BERT, num_hidden_layers=6))
    small = truncate_layers(full, 3, which="every_k")
    for i, j in enumerate([0, 2, 4]):
        for p, q in zip(small.layer(i).parameters(), full.layer(j).parameters()):
            assert torch.equal(p, q) and p.data_ptr() != q.data_ptr()


def test_bad_arguments():
    full = kexue.build_transformer_model(config=BERT)
    with pytest.raises(ValueError, match="n_layers"):
        truncate_layers(full, 5)
    with pytest.raises(ValueError, match="n_layers"):
        truncate_layers(full, 0)
    with pytest.raises(ValueError, match="every_k"):
        truncate_layers(full, 3, which="every_k")
    with pytest.raises(ValueError, match="which"):
        truncate_layers(full, 2, which="last")
    shared = kexue.build_transformer_model(config=dict(ALBERT, num_hidden_groups=2))
    with pytest.raises(ValueError, match="share 2 blocks"):
        truncate_layers(shared, 2)
