"""The example plugin's own test: it registers, validates its parameters and drops layers."""
import compressbench_drop_layers as plugin
import torch
from transformers import BertConfig, BertForSequenceClassification

from compressbench import api


def test_registers_through_its_entry_point():
    pm = api.get_plugin_manager()
    assert pm.methods.owners["drop-layers"] == "drop-layers"


def test_drops_the_top_layers():
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=100, hidden_size=16, num_hidden_layers=4, num_attention_heads=2,
        intermediate_size=32))
    bottom = model.bert.encoder.layer[0]

    class Ctx:
        def model(self):
            return model

    out = plugin.DropLayers().build(Ctx(), plugin.Params(drop=3, recover=False))
    assert len(out.bert.encoder.layer) == 1 and out.config.num_hidden_layers == 1
    assert out.bert.encoder.layer[0] is bottom
    assert out(input_ids=torch.tensor([[1, 2, 3]])).logits.shape == (1, 2)
