"""Each distillation loss against a value worked out by hand on tiny tensors, and each student
initialisation rule (which teacher layer went where)."""
from __future__ import annotations

import math
import random
from types import SimpleNamespace

import pytest
import torch
from compressbench_plugins import bilstm, distilbert, kd, pkd, tinybert
from torch import nn

from compressbench.data import IGNORE
from compressbench.models import StudentSpec, load_pretrained, make_student

LN3 = math.log(3)


class Fixed(nn.Module):
    """A stand-in model that returns fixed logits (and hidden states)."""

    def __init__(self, logits, hidden=None):
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(logits))
        self.hidden = None if hidden is None else [torch.tensor(h) for h in hidden]

    def forward(self, input_ids, attention_mask=None, token_type_ids=None,
                output_hidden_states=False):
        return SimpleNamespace(logits=self.logits, hidden_states=self.hidden)


def batch_of(labels, mask=None):
    labels = torch.tensor(labels)
    width = labels.shape[1] if labels.dim() == 2 else 3
    ids = torch.ones((labels.shape[0], width), dtype=torch.long)
    return {"input_ids": ids, "labels": labels,
            "attention_mask": torch.ones_like(ids) if mask is None else torch.tensor(mask)}


def kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q))


def softmax(z):
    e = [math.exp(v) for v in z]
    return [v / sum(e) for v in e]


# --------------------------------------------------------------------------- kd

def test_soft_loss_is_t2_kl_at_temperature():
    s, t = torch.tensor([[0.0, 0.0]]), torch.tensor([[LN3, 0.0]])
    # T = 1: teacher (0.75, 0.25), student (0.5, 0.5)
    expected = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)  # 0.130812
    assert kd.soft_loss(s, t, 1.0, "classification").item() == pytest.approx(expected, abs=1e-6)
    # T = 2: teacher softmax(ln3 / 2, 0) = (sqrt3, 1) / (sqrt3 + 1); times T^2 = 4
    p = [math.sqrt(3) / (math.sqrt(3) + 1), 1 / (math.sqrt(3) + 1)]
    assert kd.soft_loss(s, t, 2.0, "classification").item() == pytest.approx(
        4 * kl(p, [0.5, 0.5]), abs=1e-6)  # 0.145536


def test_soft_loss_regression_and_token_mask():
    s, t = torch.tensor([[1.0], [3.0]]), torch.tensor([[0.0], [1.0]])
    assert kd.soft_loss(s, t, 5.0, "regression").item() == pytest.approx((1 + 4) / 2)
    # token task: the second position is masked out, so only the first one counts
    s = torch.tensor([[[0.0, 0.0], [9.0, -9.0]]])
    t = torch.tensor([[[LN3, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, False]])
    assert kd.soft_loss(s, t, 1.0, "token", mask).item() == pytest.approx(0.130812, abs=1e-6)


def test_kd_loss_mixes_soft_and_hard():
    model = Fixed([[0.0, 0.0]])
    batch = batch_of([0]) | {"teacher_logits": torch.tensor([[LN3, 0.0]])}
    loss, parts = kd.kd_loss("classification", 1.0, 0.9)(model, batch)
    hard = math.log(2)  # CE of (0.5, 0.5) on class 0
    assert loss.item() == pytest.approx(0.9 * 0.130812 + 0.1 * hard, abs=1e-6)
    assert parts["hard"] == pytest.approx(hard, abs=1e-6)


# --------------------------------------------------------------------------- distilbert

def test_cosine_loss_ignores_padding():
    s = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [5.0, 5.0]]])  # (1, 3, 2)
    t = torch.tensor([[[0.0, 1.0], [1.0, 1.0], [-5.0, 0.0]]])
    mask = torch.tensor([[1, 1, 0]])  # the third token is padding
    # 1 - cos: 1 (orthogonal) and 0 (identical) -> mean 0.5
    assert distilbert.cosine_loss(s, t, mask).item() == pytest.approx(0.5, abs=1e-6)


def test_triple_loss_by_hand():
    hidden_s = [[[[1.0, 0.0]]], [[[1.0, 0.0]]]]  # embeddings, last layer: (1, 1, 2)
    hidden_t = [[[[0.0, 1.0]]], [[[0.0, 1.0]]]]
    student, teacher = Fixed([[0.0, 0.0]], hidden_s), Fixed([[LN3, 0.0]], hidden_t)
    p = distilbert.Params(temperature=1.0, alpha_ce=5.0, alpha_task=2.0, alpha_cos=1.0)
    batch = batch_of([1], mask=[[1]])
    loss, parts = distilbert.triple_loss(teacher, "classification", p)(student, batch)
    assert parts == pytest.approx({"ce": 0.130812, "task": math.log(2), "cos": 1.0}, abs=1e-6)
    assert loss.item() == pytest.approx(5 * 0.130812 + 2 * math.log(2) + 1.0, abs=1e-5)
    # the paper's ablation: a term with weight 0 is not computed at all
    p0 = distilbert.Params(alpha_ce=0.0, alpha_task=1.0, alpha_cos=0.0)
    loss, parts = distilbert.triple_loss(teacher, "classification", p0)(student, batch)
    assert set(parts) == {"task"} and loss.item() == pytest.approx(math.log(2), abs=1e-6)


def test_mlm_masking_rate_special_tokens_and_replacement():
    torch.manual_seed(0)
    vocab, special = 50, [0, 1, 2]
    ids = torch.randint(3, vocab, (64, 40))
    ids[:, 0], ids[:, -1] = 1, 2  # [CLS] ... [SEP]
    mask = torch.ones_like(ids)
    probs = distilbert.token_probs([{"input_ids": r.tolist()} for r in ids], vocab, special, 0.7)
    assert probs[special].sum() == 0
    p = distilbert.Params(mode="pretrain")
    new, labels = distilbert.mask_tokens(ids, mask, probs, p, mask_id=3, vocab_size=vocab)
    picked = labels != IGNORE
    assert int(picked.sum()) == math.ceil(0.15 * ids.numel())
    assert not picked[:, 0].any() and not picked[:, -1].any()  # special tokens never picked
    assert torch.equal(labels[picked], ids[picked])
    assert torch.equal(new[~picked], ids[~picked])  # unpicked tokens untouched
    share_masked = float((new[picked] == 3).float().mean())
    assert 0.7 < share_masked < 0.9  # 80% [MASK] (plus the few that were id 3 already)


def test_token_probs_smoothing():
    feats = [{"input_ids": [5] * 8 + [6]}]
    probs = distilbert.token_probs(feats, 8, [0], 0.7)
    # counts 8 and 1 (and 1 for unseen ids, clamped): rare ids are picked more often
    assert probs[6] / probs[5] == pytest.approx(8 ** 0.7, rel=1e-5)


# --------------------------------------------------------------------------- pkd

def test_pkd_layer_maps_match_the_paper():
    assert pkd.pkd_layers(12, 6, "skip") == [(1, 2), (2, 4), (3, 6), (4, 8), (5, 10)]
    assert pkd.pkd_layers(12, 6, "last") == [(1, 7), (2, 8), (3, 9), (4, 10), (5, 11)]
    assert pkd.pkd_layers(6, 3, "skip") == [(1, 2), (2, 4)]
    assert pkd.pkd_layers(6, 3, "last") == [(1, 4), (2, 5)]


def test_patient_loss_by_hand():
    # [CLS] states: student (3, 4) -> (0.6, 0.8); teacher (2, 0) -> (1, 0)
    s = (None, torch.tensor([[[3.0, 4.0], [9.0, 9.0]]]))
    t = (None, None, torch.tensor([[[2.0, 0.0], [1.0, 1.0]]]))
    expected = (0.4 ** 2 + 0.8 ** 2) / 2  # a mean over the H = 2 hidden units: 0.4
    assert pkd.patient_loss(s, t, [(1, 2)], None).item() == pytest.approx(expected, abs=1e-6)


def test_pkd_loss_has_the_authors_scale():
    """The authors' KD_loss.py on the same tensors: F.mse_loss of the normalised (B, layers, H)
    [CLS] states, and KLDivLoss(reduction='mean') * T^2 (a mean over examples and classes)."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    B, H, C, T = 4, 8, 3, 10.0
    s_states = tuple(torch.randn(B, 5, H) for _ in range(3))  # embeddings + 2 layers
    t_states = tuple(torch.randn(B, 5, H) for _ in range(5))  # embeddings + 4 layers
    pairs = [(1, 2), (2, 4)]
    s_pat = torch.stack([s_states[j][:, 0] for j, _ in pairs], dim=1)  # (B, 2, H)
    t_pat = torch.stack([t_states[i][:, 0] for _, i in pairs], dim=1)  # (B, 2, H)
    authors_pt = F.mse_loss(F.normalize(t_pat, p=2, dim=2), F.normalize(s_pat, p=2, dim=2))
    assert pkd.patient_loss(s_states, t_states, pairs, None).item() == pytest.approx(
        authors_pt.item(), rel=1e-5)
    s_logits, t_logits = torch.randn(B, C), torch.randn(B, C)
    labels = torch.tensor([0, 1, 2, 0])
    authors_kd = nn.KLDivLoss(reduction="mean")(F.log_softmax(s_logits / T, dim=1),
                                                F.softmax(t_logits / T, dim=1)) * T * T
    p = pkd.Params(temperature=T, alpha=0.5, beta=100.0)
    student, teacher = Fixed(s_logits.tolist(), s_states), Fixed(t_logits.tolist(), t_states)
    loss, parts = pkd.pkd_loss(teacher, "classification", p, pairs)(student, {
        "input_ids": torch.ones(B, 5, dtype=torch.long), "labels": labels})
    expected = 0.5 * F.cross_entropy(s_logits, labels) + 0.5 * authors_kd + 100 * authors_pt
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_pkd_loss_by_hand():
    hidden_s = [[[[0.0, 1.0]]], [[[3.0, 4.0]]], [[[0.0, 1.0]]]]
    hidden_t = [[[[0.0, 1.0]]], [[[1.0, 0.0]]], [[[0.0, 1.0]]]]
    student, teacher = Fixed([[0.0, 0.0]], hidden_s), Fixed([[LN3, 0.0]], hidden_t)
    p = pkd.Params(temperature=1.0, alpha=0.5, beta=10.0)
    loss, parts = pkd.pkd_loss(teacher, "classification", p, [(1, 1)])(student, batch_of([0]))
    # soft: KL / C (KLDivLoss mean reduction); patient: a mean over H = 2
    expected = 0.5 * math.log(2) + 0.5 * 0.130812 / 2 + 10 * 0.4
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    assert parts["pt"] == pytest.approx(0.4, abs=1e-6)


# --------------------------------------------------------------------------- tinybert

def test_soft_cross_entropy_by_hand():
    s, t = torch.tensor([[0.0, 0.0]]), torch.tensor([[LN3, 0.0]])
    # -(0.75 ln 0.5 + 0.25 ln 0.5) = ln 2
    assert kd.soft_cross_entropy(s, t, 1.0, "classification").item() == pytest.approx(
        math.log(2), abs=1e-6)


def test_intermediate_loss_by_hand():
    # one student layer mapped to teacher layer 2; zero student states, teacher states of ones
    s_hidden = (torch.zeros(1, 2, 2), torch.zeros(1, 2, 2))
    t_hidden = (torch.ones(1, 2, 2), torch.full((1, 2, 2), 5.0), torch.ones(1, 2, 2) * 2)
    s_att, t_att = [torch.zeros(1, 1, 2, 2)], [torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2) * 3]
    proj = nn.ModuleDict({"embedding": nn.Identity(), "hidden": nn.Identity()})
    mask = torch.tensor([[1, 0]])  # token 2 is padding: its rows and columns are ignored
    t_hidden[2][0, 1] = 100.0  # a padding position's value must not count
    loss, parts = tinybert.intermediate_loss(s_hidden, t_hidden, s_att, t_att, [2], proj, mask,
                                             tinybert.Params())
    # emb (0-1)^2 = 1; hidden (0-2)^2 = 4; attention (0-3)^2 = 9 on the one real pair
    assert parts == pytest.approx({"emb": 1.0, "hidden": 4.0, "att": 9.0})
    assert loss.item() == pytest.approx(14.0)


def test_tinybert_default_student_and_mapping():
    import transformers
    minilm = transformers.BertConfig(hidden_size=384, num_attention_heads=12,
                                     intermediate_size=1536, num_hidden_layers=6)
    spec = tinybert.default_student(minilm)
    assert (spec.layers, spec.hidden_size, spec.intermediate_size,
            spec.num_attention_heads, spec.init) == (4, 156, 600, 12, "random")
    base = transformers.BertConfig()  # BERT-base: TinyBERT4's own shape
    spec = tinybert.default_student(base)
    assert (spec.hidden_size, spec.intermediate_size) == (312, 1200)
    assert tinybert.layer_mapping(12, 4) == [3, 6, 9, 12]
    assert tinybert.layer_mapping(6, 4) == [1, 3, 4, 6]


# --------------------------------------------------------------------------- bilstm

def test_bilstm_loss_is_mse_on_logits():
    model = Fixed([[1.0, 2.0]])
    batch = batch_of([0]) | {"teacher_logits": torch.tensor([[0.0, 0.0]])}
    assert bilstm.bilstm_loss("classification", 0.0)(model, batch).item() == pytest.approx(2.5)
    loss, _ = bilstm.bilstm_loss("classification", 0.5)(model, batch)
    ce = -math.log(softmax([1.0, 2.0])[0])
    assert loss.item() == pytest.approx(0.5 * ce + 0.5 * 2.5, abs=1e-6)


def test_augmentation_rules():
    from collections import Counter

    from compressbench import augment as A
    lexicon = A.Lexicon({"good": Counter(JJ=3), "bad": Counter(JJ=1), "film": Counter(NN=2)})
    rng = random.Random(0)
    words = "a good film".split()
    everything_masked = A.TangOptions(p_mask=1.0, p_pos=0.0, p_ng=0.0)
    assert A.augment_words(words, rng, everything_masked, lexicon, "[MASK]", True) == \
        ["[MASK]"] * 3
    always_pos = A.TangOptions(p_mask=0.0, p_pos=1.0, p_ng=0.0)
    for _ in range(20):  # 'good' -> good/bad (same tag), 'film' -> film, 'a' unknown: kept
        out = A.augment_words(words, rng, always_pos, lexicon, "[MASK]", True)
        assert out[0] == "a" and out[1] in ("good", "bad") and out[2] == "film"
    ngrams = A.TangOptions(p_mask=0.0, p_pos=0.0, p_ng=1.0)
    long = "one two three four five six seven".split()
    for _ in range(20):
        out = A.augment_words(long, rng, ngrams, None, "[MASK]", True)
        text = " ".join(long)
        assert 1 <= len(out) <= 5 and " ".join(out) in text
        assert A.augment_words(long, rng, ngrams, None, "[MASK]", False) == long


def test_lexicon_from_conll_columns(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n"
                    "German JJ B-NP B-MISC\nGerman NNP B-NP B-MISC\nGerman JJ I-NP I-MISC\n")
    from compressbench.augment import Lexicon
    lex = Lexicon.read(path)
    assert lex.tag == {"eu": "NNP", "rejects": "VBZ", "german": "JJ"}


def test_compact_moves_a_segment_to_the_front():
    ids = torch.tensor([[1, 2, 3, 4, 0]])
    keep = torch.tensor([[False, False, True, True, False]])
    out, mask = bilstm.compact(ids, keep)
    assert out.tolist() == [[3, 4]] and mask.tolist() == [[True, True]]


def test_siamese_bilstm_reads_each_sentence_separately():
    torch.manual_seed(0)
    model = bilstm.BiLSTMStudent(20, 8, 4, 6, 2, "classification", pair=True).eval()
    ids = torch.tensor([[1, 5, 6, 2, 7, 8, 2, 0]])
    tt = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 0]])
    h1 = model.run(*bilstm.compact(ids, (mask & (tt == 0)).bool()))[1]
    h2 = model.run(torch.tensor([[7, 8, 2]]), torch.ones(1, 3, dtype=torch.bool))[1]
    expected = model.classifier(torch.cat([h1, h2, h1 * h2, (h1 - h2).abs()], -1))
    assert torch.allclose(model(ids, mask, tt), expected, atol=1e-6)


# --------------------------------------------------------------------------- initialisation

def test_distilbert_student_takes_every_other_layer(tiny_teacher4):
    bert = load_pretrained(str(tiny_teacher4), "classification", 2)
    student = distilbert.make_student(bert, StudentSpec(layers=2), "classification")
    assert type(student).__name__ == "DistilBertForSequenceClassification"
    assert student.layer_sources == [0, 2]
    for j, i in enumerate([0, 2]):
        assert torch.equal(student.distilbert.transformer.layer[j].attention.q_lin.weight,
                           bert.bert.encoder.layer[i].attention.self.query.weight)
        assert torch.equal(student.distilbert.transformer.layer[j].ffn.lin2.bias,
                           bert.bert.encoder.layer[i].output.dense.bias)
    names = [n for n, _ in student.named_parameters()]
    assert not any("token_type" in n or "pooler" in n for n in names)


def test_distilbert_conversion_is_exact_for_single_sentences(tiny_teacher4):
    """With every layer kept, the DistilBERT copy computes exactly what BERT computes."""
    bert = load_pretrained(str(tiny_teacher4), "token", 3).eval()
    student = distilbert.bert_to_distilbert(bert, 4, "teacher-skip", "token").eval()
    ids = torch.tensor([[101, 7592, 2088, 102]])
    with torch.no_grad():
        a = bert(input_ids=ids, output_hidden_states=True).hidden_states[-1]
        b = student(input_ids=ids, output_hidden_states=True).hidden_states[-1]
    assert torch.allclose(a, b, atol=1e-5)


def test_pkd_student_takes_the_first_layers(tiny_teacher4):
    bert = load_pretrained(str(tiny_teacher4), "classification", 2)
    student = make_student(bert, StudentSpec(layers=2, init="teacher-first"))
    for i in range(2):
        assert torch.equal(student.bert.encoder.layer[i].attention.self.key.weight,
                           bert.bert.encoder.layer[i].attention.self.key.weight)


def test_random_student_depends_on_the_seed(tiny_teacher4):
    bert = load_pretrained(str(tiny_teacher4), "classification", 2)
    spec = StudentSpec(layers=1, init="random", hidden_size=16, num_attention_heads=2,
                       intermediate_size=32)
    torch.manual_seed(1)
    a = make_student(bert, spec)
    torch.manual_seed(2)
    b = make_student(bert, spec)
    assert a.config.hidden_size == 16
    assert not torch.equal(a.bert.encoder.layer[0].attention.self.query.weight,
                           b.bert.encoder.layer[0].attention.self.query.weight)


def test_student_from_a_checkpoint_path(tiny_teacher):
    bert = load_pretrained(str(tiny_teacher), "classification", 2)
    student = make_student(bert, StudentSpec(init=str(tiny_teacher)))
    assert torch.equal(student.bert.embeddings.word_embeddings.weight,
                       bert.bert.embeddings.word_embeddings.weight)


def test_tinybert_prediction_stage_on_regression_fits_the_gold_score():
    """Huawei's task_distill.py: MSELoss(student_logits.view(-1), label_ids.view(-1))."""
    student = Fixed([[1.0], [3.0]])
    batch = {"input_ids": torch.ones(2, 3, dtype=torch.long),
             "labels": torch.tensor([2.0, 5.0]), "teacher_logits": torch.tensor([[1.0], [3.0]])}
    gold = tinybert.prediction_loss("regression", 1.0)(student, batch)
    assert gold.item() == pytest.approx(((1 - 2) ** 2 + (3 - 5) ** 2) / 2)
    teacher = tinybert.prediction_loss("regression", 1.0, "teacher")(student, batch)
    assert teacher.item() == pytest.approx(0.0)  # the student already equals the teacher
    assert tinybert.Params().regression_target == "gold"
    with pytest.raises(ValueError, match="regression_target"):
        tinybert.Params(regression_target="teachr")
