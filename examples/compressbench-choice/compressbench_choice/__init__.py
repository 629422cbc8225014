"""compressbench-choice: a multiple-choice task kind from outside the core, as a plugin package.

An example is a premise and K candidate continuations; the model scores each (premise,
candidate) pair and the highest score is the answer (COPA, SWAG, HellaSwag, ARC). It is the
shape the built-in kinds never have:

- inputs are K token rows per example: a batch is (B, K, T), not (B, T) (the core pads every
  row to the batch's longest; :func:`compressbench.api.n_tokens` is a feature's longest row);
- the head is transformers' ``AutoModelForMultipleChoice``: one score per (example, choice), so
  logits are (B, K) and the classes are answer positions;
- the ONNX graph has three dynamic input axes (batch, choices, sequence) and (batch, choices)
  logits, so int8 ONNX Runtime models of the kind are built, scored and timed like any other;
- losses, agreement and the bootstrap are those of classification over the K positions
  (cross-entropy; KL at temperature T; argmax agreement; accuracy resampled by example).

It also registers a task, ``toy-copa`` (320 training and 80 dev premises, two candidates each,
generated in code: the right candidate shares the premise's topic), so a suite can run it:
``tasks: [toy-copa]``. It imports only ``compressbench.api``.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from compressbench import api

__version__ = "0.1.0"
CHOICES = ("choice 1", "choice 2")


class MultipleChoice(api.TaskKind):
    name = "multiple-choice"
    description = "one of K candidates per example; (B, K, T) inputs, (B, K) logits"
    metrics = ("accuracy",)
    default_metrics = ("accuracy",)
    unit = "answer"
    analysis_text = "per answer position, with a confusion matrix"

    # ------------------------------------------------------------------ data and scoring

    def encode(self, tokenizer, examples, max_length: int) -> list[dict]:
        """One feature per example: K token rows, (premise, candidate k) each."""
        feats = []
        for ex in examples:
            k = len(ex.text_b)
            enc = tokenizer([ex.text_a] * k, list(ex.text_b), truncation=True,
                            max_length=max_length)
            f = {key: enc[key] for key in ("input_ids", "token_type_ids") if key in enc}  # (K, T_k)
            f["labels"] = int(ex.label)
            feats.append(f)
        return feats

    def score(self, task, gold, predictions) -> dict:
        g, p = np.asarray(gold), np.asarray(predictions)
        return {"accuracy": float((g == p).mean())}

    def resample_metric(self, metric: str, gold, pred, idx: np.ndarray) -> np.ndarray:
        if metric != "accuracy":
            raise ValueError(f"no bootstrap for multiple-choice metric {metric!r}")
        return (np.asarray(gold) == np.asarray(pred))[idx].mean(1)  # (b,)

    # ------------------------------------------------------------------ model and runtimes

    def auto_class(self):
        import transformers
        return transformers.AutoModelForMultipleChoice

    def onnx_input_axes(self) -> dict[int, str]:
        return {0: "batch", 1: "choices", 2: "sequence"}  # (B, K, T)

    def onnx_logits_axes(self) -> dict[int, str]:
        return {0: "batch", 1: "choices"}  # (B, K)

    def shape_inputs(self, ids):
        return ids.unsqueeze(1).expand(-1, len(CHOICES), -1).contiguous()  # (B, T) -> (B, K, T)

    # ------------------------------------------------------------------ report

    def example(self, labels, a, b, gold, teacher, pred) -> dict:
        text = a.strip() + " ‖ " + " / ".join(f"{i + 1}) {c.strip()}" for i, c in enumerate(b))
        return {"text": text, "gold": labels[gold], "teacher": labels[teacher],
                "method": labels[pred]}


MULTIPLE_CHOICE = MultipleChoice()


#: premises per topic, and continuations per topic: the right one shares the premise's topic
PREMISES = {
    "sports": ("the striker scored twice in the final", "fans filled the stadium for the derby",
               "the keeper saved a penalty", "the runner broke the national record",
               "the coach picked a young team", "the match went to extra time"),
    "weather": ("dark clouds gathered over the hills", "the river rose after days of rain",
                "snow closed the mountain pass", "a heat wave dried the fields",
                "strong winds knocked down trees", "fog covered the harbour at dawn"),
    "cooking": ("she kneaded the dough for the bread", "the soup simmered on the stove",
                "he chopped onions for the sauce", "the cake rose in the oven",
                "they grilled fish on the beach", "the chef tasted the stew"),
    "music": ("the band released a new album", "the choir sang in the old church",
              "she tuned her violin before the concert", "the drummer kept a steady beat",
              "the orchestra rehearsed the symphony", "the singer lost her voice on tour"),
}
ANSWERS = {
    "sports": ("the crowd cheered the winners", "the team lifted the trophy",
               "the players celebrated on the pitch", "the referee blew the whistle"),
    "weather": ("people stayed indoors with umbrellas", "the farmers waited for the storm to pass",
                "the roads were closed for safety", "everyone checked the forecast"),
    "cooking": ("the kitchen smelled of fresh food", "dinner was served hot",
                "the guests asked for the recipe", "the plates were soon empty"),
    "music": ("the audience applauded the performance", "the song climbed the charts",
              "the hall was full of listeners", "the fans sang along"),
}
SIZES = {"train": 320, "dev": 80}


def toy_copa(split: str) -> list:
    """The toy task's split, generated (seeded by the split's name; synthetic, not COPA's
    data): a premise, the right continuation (same topic) and a wrong one, in random order."""
    import random
    rng = random.Random(f"toy-copa/{split}")
    topics = sorted(PREMISES)
    out = []
    for _ in range(SIZES["dev" if split == "dev" else "train"]):
        topic = rng.choice(topics)
        other = rng.choice([t for t in topics if t != topic])
        right, wrong = rng.choice(ANSWERS[topic]), rng.choice(ANSWERS[other])
        label = rng.randint(0, 1)
        choices = (right, wrong) if label == 0 else (wrong, right)
        out.append(api.Example(rng.choice(PREMISES[topic]), choices, label))
    return out


def read_copa(path: Path) -> list:
    """A file of ``premise<TAB>choice1<TAB>choice2<TAB>label`` lines (label 1 or 2; a header
    first), e.g. COPA itself. A malformed line is set aside with a warning naming the file and
    line."""
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines()[1:], start=2):
        fields = line.split("\t")
        if len(fields) != 4 or not all(x.strip() for x in fields) or fields[3] not in ("1", "2"):
            warnings.warn(f"{path}:{lineno}: not 'premise<TAB>choice1<TAB>choice2<TAB>1|2'; "
                          "line set aside", stacklevel=2)
            continue
        out.append(api.Example(fields[0], (fields[1], fields[2]), int(fields[3]) - 1))
    return out


def load_copa(split: str, _data_dir: Path | None) -> list:
    return toy_copa(split)


@api.hookimpl
def register_task_kinds(register):
    register(MULTIPLE_CHOICE)


@api.hookimpl
def register_tasks(register):
    register(api.Task(name="toy-copa", kind=MULTIPLE_CHOICE, labels=CHOICES,
                      metrics=MULTIPLE_CHOICE.default_metrics, load_split=load_copa,
                      description="toy COPA-shaped multiple choice (compressbench-choice "
                                  "example)"))
