"""Models: loading teachers, building students, and saving/loading any produced model.

One module each: :mod:`.teacher` (a model reference, remote code refused, a pretrained encoder
with a task kind's head, its tokenizer), :mod:`.students`, :mod:`.recipes` (what a saved recipe
may name), :mod:`.formats` (the saved formats, save and load: read its docstring for what a
saved model folder holds), :mod:`.sparse`, :mod:`.stats`, :mod:`.io`; this package keeps their
names together, so ``compressbench.models.X`` works for each.
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
    student_config,
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
