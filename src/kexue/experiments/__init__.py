"""kexue.experiments: one module per article, each defining `EXPERIMENT` (see `base.py`); `kexue reproduce`
runs them and writes an offline HTML report with results.json."""
from .base import (MODES, NOT_REPRODUCED, PARTLY, REPRODUCED, Check, Experiment, Figure, Measurement, verdict)

__all__ = ["Check", "Experiment", "Figure", "Measurement", "MODES", "verdict", "REPRODUCED", "PARTLY",
           "NOT_REPRODUCED"]
