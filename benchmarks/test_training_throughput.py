"""The shared training loop against a plain transformers.Trainer: same model (the embedded
teacher), same SST-2 subset, batch size and number of steps. Prints the ratio.

Run: make bench   (or: pytest benchmarks/test_training_throughput.py --benchmark-only -s)
"""
from __future__ import annotations

import os
import time

import torch

from compressbench import data as D
from compressbench import models
from compressbench.suite import Training
from compressbench.training import set_seed, supervised_loss, train

STEPS, BATCH = 40, 32


def test_loop_vs_trainer(benchmark, sst2, tmp_path):
    import transformers
    from datasets import Dataset

    task, train_ex, _ = sst2
    ref = str(models.embedded_teacher_path())
    tok = models.load_tokenizer(ref)
    examples = train_ex[:STEPS * BATCH]
    feats = D.encode(task, tok, examples, 128)
    val = feats[:8]
    torch.set_num_threads(os.cpu_count() or 1)  # training uses every core, as in a suite

    def ours():
        set_seed(0)
        model = models.load_pretrained(ref, "classification", 2)
        cfg = Training(epochs=1.0, batch_size=BATCH, learning_rate=5e-5)
        start = time.perf_counter()
        result = train(model, supervised_loss("classification"), task, feats, val,
                       examples[:8], cfg, seed=0)
        assert result.steps == STEPS
        return time.perf_counter() - start

    def trainers():
        set_seed(0)
        model = models.load_pretrained(ref, "classification", 2)
        ds = Dataset.from_list([{"input_ids": f["input_ids"], "token_type_ids":
                                 f["token_type_ids"], "labels": f["labels"]} for f in feats])
        args = transformers.TrainingArguments(
            output_dir=str(tmp_path / "trainer"), per_device_train_batch_size=BATCH,
            max_steps=STEPS, learning_rate=5e-5, warmup_steps=0.1, weight_decay=0.01,
            max_grad_norm=1.0, train_sampling_strategy="group_by_length", report_to=[],
            save_strategy="no",
            logging_strategy="no", use_cpu=True, disable_tqdm=True, seed=0,
            dataloader_num_workers=0)
        trainer = transformers.Trainer(model=model, args=args, train_dataset=ds,
                                       data_collator=transformers.DataCollatorWithPadding(tok))
        start = time.perf_counter()
        trainer.train()
        return time.perf_counter() - start

    times = {}

    def both():
        times["compressbench"] = ours()
        times["trainer"] = trainers()

    benchmark.pedantic(both, rounds=1, iterations=1)
    ratio = times["trainer"] / times["compressbench"]
    benchmark.extra_info.update({k + "_s": v for k, v in times.items()} | {"ratio": ratio})
    print(f"\n{STEPS} steps x batch {BATCH} on {torch.get_num_threads()} threads: compressbench "
          f"loop {times['compressbench']:.1f}s ({STEPS * BATCH / times['compressbench']:.0f} "
          f"ex/s, incl. one validation pass), transformers.Trainer {times['trainer']:.1f}s "
          f"({STEPS * BATCH / times['trainer']:.0f} ex/s); Trainer/compressbench = {ratio:.2f}")
