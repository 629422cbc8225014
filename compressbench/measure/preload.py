"""What every measuring process imports before it measures (the fork server once, an exec'd
child itself)."""

#: imported once: what every measuring process needs, and the model code (so importing it is
#: never counted as a model's memory). Not the runtimes (onnxruntime, openvino): their
#: libraries would then be resident in every other backend's measurement too.
PRELOAD = ("torch", "transformers.models.bert.modeling_bert",
           "transformers.models.distilbert.modeling_distilbert", "compressbench.models",
           "compressbench.measure.child", "compressbench.runtimes")
