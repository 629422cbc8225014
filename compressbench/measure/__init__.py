"""Measurement, the same for every model and backend: batch-1 latency (wall and CPU time),
throughput, memory, and paired speed-ups against the teacher.

The package is split as optimum-benchmark splits it, around compressbench's paired protocol:

- :mod:`~compressbench.measure.backend`: the backend protocol (a runtime loads a saved model,
  prepares inputs outside the timer, runs it) and :class:`Unsupported`;
- the built-in backends (``torch``, ``torch-compile``, ``onnxruntime``, ``openvino``) are one
  file each in :mod:`compressbench.runtimes`, registered through the ``register_backends``
  hook;
- :mod:`~compressbench.measure.protocol`: what is timed, how often, in which order;
- :mod:`~compressbench.measure.trackers`: raw wall/CPU times and memory, :class:`Summary`;
- :mod:`~compressbench.measure.stats`: parameters, size on disk, format and dtypes of a model;
- :mod:`~compressbench.measure.launcher`: the parent side, one fresh process per model and
  backend, started with one config file; :mod:`~compressbench.measure.child` is that process.
"""
from compressbench.measure.backend import SavedModel, Unsupported
from compressbench.measure.launcher import (
    TMP_PREFIX,
    die_with_parent,
    measure_model,
    remove_stale_temp_dirs,
)
from compressbench.measure.trackers import Summary, cpu_model, peak_rss_mb, rss_mb

__all__ = [
    "TMP_PREFIX",
    "SavedModel",
    "Summary",
    "Unsupported",
    "cpu_model",
    "die_with_parent",
    "measure_model",
    "peak_rss_mb",
    "remove_stale_temp_dirs",
    "rss_mb",
]
