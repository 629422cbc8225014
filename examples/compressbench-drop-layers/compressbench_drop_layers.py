"""Top-layer dropping (Sajjad et al. 2020, "Poor Man's BERT"): remove the fine-tuned teacher's
top layers, then fine-tune what is left to recover."""
from dataclasses import dataclass

from torch import nn

from compressbench import api


@dataclass(frozen=True)
class Params:
    drop: int = 2  # layers removed from the top; Sajjad et al. 2020 drop 4 of 12 (Table 2)
    recover: bool = True  # fine-tune after dropping, as in the paper


class DropLayers(api.Method):
    name = "drop-layers"
    Params = Params

    def build(self, ctx, params):
        model = ctx.model()  # the fine-tuned teacher, or the previous step of a chain
        encoder = model.base_model.encoder
        keep = len(encoder.layer) - params.drop
        encoder.layer = nn.ModuleList(encoder.layer[:keep])
        model.config.num_hidden_layers = keep
        if params.recover:
            ctx.train(model, ctx.supervised_loss())
        return model


@api.hookimpl
def register_methods(register):
    register(DropLayers())
