"""Loading teachers, building students, and saving/loading any produced model.

A saved model is a folder with ``compressbench.json`` saying how to load it. Loading runs no
code from the folder: every format below is data (JSON and tensors).

- ``"hf"``: a Hugging Face ``save_pretrained`` folder with ``model.safetensors`` (any dtype);
  ``transformers`` alone loads it. Used whenever the model's config describes every weight.
- ``"weights"``: a declarative recipe plus ``model.pt``, a state dict read with
  ``torch.load(weights_only=True)`` (plain and quantized tensors, tensor-subclass weights; no
  pickled objects). The recipe says how to build the module the weights go into: the
  architecture (``config.json`` through ``transformers``, or a factory such as the BiLSTM
  student), Linear layers whose shape differs from the config's (heads removed unevenly), then
  the transforms that change module types (dynamic int8 quantization, torchao). Factories and
  transforms are named ``module:function``; only functions marked with :func:`rebuild_step` in
  ``compressbench`` or an installed compressbench plugin (or a ``--plugin`` file the user
  loaded) are accepted, so a folder cannot name arbitrary code.
- ``"onnx"`` (``model.onnx``) and ``"openvino"`` (``model.xml`` + ``model.bin``): a model that
  exists only for one runtime (``quant-ort``, ``quant-openvino``). It loads as a
  :class:`compressbench.onnxrt.OnnxModel` / :class:`compressbench.ov.OpenVINOModel`, which
  evaluates like a PyTorch model by running the runtime, so its accuracy is the runtime's.
- ``"torch"`` and ``"state"`` (compressbench 0.1): a pickled module, or a state dict whose
  ``imports`` list the folder chose. Loading them can run code from the folder, so it is refused
  unless the caller opts in with ``unsafe_pickle=True`` (``--unsafe-load-pickle``).

A model with sparse weights also gets ``sparse.safetensors``: each weight with enough zeros
stored as a packed bitmask plus its non-zero values (``load_sparse`` rebuilds the state dict).
It is the "compressed size" of an unstructured-pruned model; the dense copy is what runs.

Plugin authors: a method whose model a config cannot describe declares how to rebuild it with
:func:`built_by` (the architecture) and :func:`rebuild_with` (a transform), both taking a
function decorated with :func:`rebuild_step` and JSON-serialisable keyword arguments.

One module each: :mod:`.teacher`, :mod:`.students`, :mod:`.recipes` (what a saved recipe may
name), :mod:`.formats` (save and load), :mod:`.sparse`, :mod:`.stats`, :mod:`.io`; this package
keeps their names together.
"""
from compressbench.models.formats import (  # noqa: F401
    PACKED_RNN,
    UNSAFE_FLAG,
    WEIGHTS,
    auto_config,
    config_describes,
    copy_model,
    is_saved,
    load_hf_format,
    load_legacy,
    load_model,
    load_portable,
    load_runtime_format,
    load_weights_format,
    portable_state,
    read_meta,
    save_format,
    save_model,
    saved_format,
    weights_meta,
)
from compressbench.models.io import META, MODEL_INPUTS, forward_kwargs, logits_of  # noqa: F401
from compressbench.models.recipes import (  # noqa: F401
    REBUILD_MARK,
    REBUILD_STEPS,
    RECIPE_ATTR,
    built_by,
    call_step,
    linear_shapes,
    load_plugin_modules,
    rebuild_step,
    rebuild_with,
    recipe_of,
    ref_of,
    resize_linears,
    resolve_step,
    set_recipe,
    trusted_packages,
)
from compressbench.models.sparse import (  # noqa: F401
    SPARSE,
    SPARSE_MIN,
    load_sparse,
    pack_bits,
    sparse_size,
    unpack_bits,
    write_sparse,
)
from compressbench.models.stats import (  # noqa: F401
    WEIGHT_SUFFIXES,
    count_parameters,
    is_quantized,
    tensor_subclass_modules,
    weight_dtypes,
    weight_tensors,
    weights_size,
)
from compressbench.models.students import (  # noqa: F401
    LAYER_RE,
    StudentSpec,
    half_student,
    layer_map,
    make_student,
)
from compressbench.models.teacher import (  # noqa: F401
    NO_REMOTE_CODE,
    REMOTE_CODE_FILES,
    auto_class,
    embedded_teacher_path,
    float32,
    load_pretrained,
    load_tokenizer,
    quiet_transformers,
    refuse_remote_code,
    resolve_model_ref,
)
