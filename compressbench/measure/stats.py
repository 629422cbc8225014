"""What a saved model is, without running it: parameters (total and non-zero), bytes on disk
(dense, and the sparse copy where there is one), the saved format and the weight dtypes. The
record's ``model`` field; see :class:`compressbench.record.ModelStats`."""
from __future__ import annotations

from pathlib import Path


def model_stats(model, folder: Path) -> dict:
    """``model``: the loaded model (its weights are counted); ``folder``: where it is saved."""
    from compressbench import models

    total, nonzero = models.count_parameters(model)
    return {"parameters": total, "nonzero_parameters": nonzero,
            "size_bytes": models.weights_size(folder),
            "sparse_size_bytes": models.sparse_size(folder),
            "format": models.saved_format(folder), "dtypes": models.weight_dtypes(model)}
