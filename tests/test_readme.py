"""The README is the user's manual: its Python blocks run, in order, in one namespace (so it cannot rot)."""
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_python_blocks_and_each_runs(capsys):
    blocks = python_blocks()
    assert len(blocks) >= 5
    namespace: dict = {"__name__": "readme"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"README.md block {i}", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "torch.Size([2, 8, 384])" in printed                 # the shape the first block promises
    for named in ("max_new_tokens", "attention_mask must hold only 0 and 1", "num_attention_heads", "surrogate",
                  "num_beams"):                            # each bad call of the last block names its argument
        assert named in printed, named
    assert namespace["trainer"].global_step == 4
