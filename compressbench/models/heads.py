"""Student heads other than BERT's: a mean-pooling head (``student: {head: mean}``).

BERT's sequence head reads the [CLS] token through the pooler (dense + tanh). A sentence-
embedding teacher such as all-MiniLM-L6-v2 was trained to be read by the mean of its token
states (Reimers & Gurevych 2019), and its 3-layer students score poorly on STS-B through [CLS]
(Pearson 0.08-0.28 at 1,000-3,000 examples, ``reports/learning-curves``). ``mean_pool`` turns a
``BertForSequenceClassification`` into one whose classifier reads the masked mean of the last
layer's token states instead (the pooler's weights stay, unused). The change is a recorded
rebuild step, so a saved model loads back with the same head (the "weights" format), and the
student's class name (:class:`MeanPoolBertForSequenceClassification`) tells the report that it
differs from a [CLS] student.
"""
from __future__ import annotations

import torch
from transformers import BertForSequenceClassification
from transformers.modeling_outputs import SequenceClassifierOutput

from compressbench.errors import ConfigError
from compressbench.models.recipes import rebuild_step, rebuild_with

HEADS = ("cls", "mean")


class MeanPoolBertForSequenceClassification(BertForSequenceClassification):
    """BERT with its classifier on the masked mean of the last layer's token states."""

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None,
                position_ids=None, inputs_embeds=None, labels=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, **kwargs):
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                        token_type_ids=token_type_ids, position_ids=position_ids,
                        inputs_embeds=inputs_embeds, output_attentions=output_attentions,
                        output_hidden_states=output_hidden_states, return_dict=True, **kwargs)
        states = out.last_hidden_state  # (B, T, H)
        if attention_mask is None:
            pooled = states.mean(dim=1)
        else:
            mask = attention_mask.unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        logits = self.classifier(self.dropout(pooled))
        loss = None
        if labels is not None:
            if self.config.problem_type == "regression" or self.num_labels == 1:
                loss = torch.nn.functional.mse_loss(logits.view(-1), labels.float().view(-1))
            else:
                loss = torch.nn.functional.cross_entropy(logits.view(-1, self.num_labels),
                                                         labels.view(-1))
        return SequenceClassifierOutput(loss=loss, logits=logits,
                                        hidden_states=out.hidden_states,
                                        attentions=out.attentions)


@rebuild_step
def mean_pool(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` (a ``BertForSequenceClassification``) with a mean-pooling head, in place; the
    change is recorded so that loading the saved model rebuilds it."""
    if type(model) is MeanPoolBertForSequenceClassification:
        return model
    if type(model) is not BertForSequenceClassification:
        raise ConfigError(f"student.head: mean is built for BERT sequence students "
                          f"(BertForSequenceClassification), not {type(model).__name__}; use "
                          f"head: cls (the default) for this student")
    model.__class__ = MeanPoolBertForSequenceClassification
    return rebuild_with(model, mean_pool)


def with_head(model: torch.nn.Module, head: str) -> torch.nn.Module:
    """``model`` with the sequence head ``head`` (:data:`HEADS`)."""
    if head == "cls":
        return model
    if head == "mean":
        return mean_pool(model)
    raise ConfigError(f"student.head: {head!r} is not one of {', '.join(HEADS)}")
