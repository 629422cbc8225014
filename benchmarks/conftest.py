"""Benchmark fixtures: real SST-2 sentences when the data directory is there, else fixed ones."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
DATA = Path(os.environ.get("COMPRESSBENCH_DATA_DIR",
                           Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def sst2():
    """(train examples, dev examples) of SST-2."""
    from compressbench.tasks import Example, builtin_tasks

    task = next(t for t in builtin_tasks() if t.name == "sst2")
    if (DATA / "glue" / "SST-2").is_dir():
        return task, task.load("train", DATA), task.load("dev", DATA)
    words = "the film is a gripping funny moving dull lifeless boring mess".split()
    fake = [Example(" ".join(words[(i * 7 + j) % len(words)] for j in range(5 + i % 20)),
                    None, i % 2) for i in range(4000)]
    return task, fake[:3000], fake[3000:]
