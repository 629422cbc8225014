"""Runtimes: one file per runtime, each registering its backend (how it loads and runs a saved
model for measurement), its typed settings (``Options``, set per suite under
``measure.backends``) and, where models can exist for it alone, its saved format (save, load,
verify). See :mod:`compressbench.measure.backend` for the protocol.

- :mod:`~compressbench.runtimes.pytorch`: ``torch``, PyTorch eager, the reference;
- :mod:`~compressbench.runtimes.torch_compile`: ``torch-compile``;
- :mod:`~compressbench.runtimes.onnxruntime`: ``onnxruntime``, the ONNX export and the
  ``onnx`` format (``pip install 'compressbench[onnx]'``);
- :mod:`~compressbench.runtimes.openvino`: ``openvino`` and the ``openvino`` format
  (``pip install 'compressbench[openvino]'``).

They are registered through the ``register_backends`` hook, exactly like a third party's
runtime (``examples/compressbench-autocast``). Importing a runtime's file imports none of its
libraries: they load when a model is prepared or run.
"""
from __future__ import annotations

from compressbench.hookspecs import hookimpl
from compressbench.runtimes.onnxruntime import OnnxRuntimeBackend
from compressbench.runtimes.openvino import OpenVINOBackend
from compressbench.runtimes.pytorch import TorchBackend
from compressbench.runtimes.torch_compile import TorchCompileBackend

BUILTIN = (TorchBackend(), TorchCompileBackend(), OnnxRuntimeBackend(), OpenVINOBackend())


@hookimpl
def register_backends(register):
    for backend in BUILTIN:
        register(backend)
