"""bert4torch side of benchmarks/generation.py, run with /tmp/b4t-venv/bin/python (its own torch==2.13.0 venv).

Loads the HF-format BERT checkpoint written by the parent with application="unilm", decodes greedily with the
decoder of bert4torch's UniLM examples (examples/seq2seq/task_question_answer_generation_by_seq2seq.py:
token and segment ids re-concatenated every step), and answers "run" lines on stdin with "done".
Usage: generation_b4t_worker.py CKPT_DIR SRC_LEN NEW_TOKENS DTYPE
"""
import json
import os
import sys

import torch
from bert4torch.generation import AutoRegressiveDecoder
from bert4torch.models import build_transformer_model


def main():
    ckpt, src_len, new, dtype = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    torch.set_num_threads(os.cpu_count())
    weights = os.path.join(ckpt, "model.safetensors")
    with open(os.path.join(ckpt, "config.json")) as f:
        cfg = json.load(f)
    for k, v in dict(hidden_act="gelu", type_vocab_size=2, layer_norm_eps=1e-12, initializer_range=0.02,
                     pad_token_id=0).items():          # HF defaults that bert4torch wants spelled out
        cfg.setdefault(k, v)
    config_path = os.path.join(ckpt, "b4t_config.json")
    with open(config_path, "w") as f:
        json.dump(cfg, f)
    model = build_transformer_model(config_path=config_path, checkpoint_path=weights,
                                    application="unilm", with_mlm=True, tie_emb_prj_weight=True).eval()
    model.to(getattr(torch, dtype))

    class UniLMDecoder(AutoRegressiveDecoder):
        @AutoRegressiveDecoder.wraps(default_rtype="logits")
        def predict(self, inputs, output_ids, states):
            token_ids, segment_ids = inputs
            token_ids = torch.cat([token_ids, output_ids], 1)
            segment_ids = torch.cat([segment_ids, torch.ones_like(output_ids)], 1)
            _, logits = model.predict([token_ids, segment_ids])
            return logits[:, -1, :].float()

    dec = UniLMDecoder(bos_token_id=None, eos_token_id=-1, max_new_tokens=new, device="cpu")
    ids = torch.randint(1000, 21000, (1, src_len), generator=torch.Generator().manual_seed(0))
    seg = torch.zeros_like(ids)

    def run():
        with torch.inference_mode():
            return dec.beam_search([ids, seg], top_k=1)

    out = run()
    first = out[0] if isinstance(out, list) else out
    print("ready " + json.dumps(first.flatten().tolist()), flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        run()
        print("done", flush=True)


if __name__ == "__main__":
    main()
