"""Pre-train a spectral encoder (or a same-size BERT baseline) from scratch with masked-language modelling: train a
WordPiece tokenizer with `tokenizers` first, then the model with `Trainer`, then fill masks with
`pipeline("fill-mask")`. The saved checkpoint fine-tunes with the other examples:

    python examples/run_mlm.py --output_dir outputs/gfnet-mlm
    python examples/run_text_classification.py --model_name_or_path outputs/gfnet-mlm --output_dir outputs/gfnet-ft

Default corpus: the movie-review sentences of `run_text_classification.py` (training split; the validation split
is held out for the MLM loss), plus every text file named with `--train_files` (one example per non-empty line).
"""

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from datasets import Dataset, DatasetDict, concatenate_datasets, load_dataset
from transformers import (
    AutoModelForMaskedLM,
    DataCollatorForLanguageModeling,
    TrainerCallback,
    pipeline,
)

from fourierformers import SpectralTrainer

import data
from common import (
    ModelArguments,
    build_config,
    check_sample_limits,
    checked_max_length,
    fit_tokenizer_to_model,
    limit_samples,
    load_model,
    load_or_train_tokenizer,
    pipeline_model,
    run_example,
    text_model_defaults,
    train_evaluate_predict,
)

logger = logging.getLogger(__name__)

MODEL_DEFAULTS = dict(hidden_size=128, num_hidden_layers=2, intermediate_size=256, num_attention_heads=4)
DEFAULT_MAX_SEQ_LENGTH = 64
PIPELINE_SENTENCES = [
    "This is one of the best [MASK] of the year.",
    "The acting is good but the story is [MASK].",
]


@dataclass
class DataArguments:
    train_files: list[str] = field(
        default_factory=list, metadata={"help": "Extra plain-text files, one example per non-empty line."}
    )
    no_default_corpus: bool = field(
        default=False, metadata={"help": "Train only on --train_files, without the movie-review sentences."}
    )
    max_seq_length: int | None = field(
        default=None,
        metadata={"help": f"Tokens per example after truncation; from scratch also the model's "
                  f"max_position_embeddings (the FFT length). Default: {DEFAULT_MAX_SEQ_LENGTH}, or the saved "
                  "model's max_position_embeddings."},
    )
    mlm_probability: float = field(default=0.15, metadata={"help": "Fraction of tokens masked."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only this many training examples."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep only this many evaluation examples."})
    pipeline_inputs: list[str] = field(
        default_factory=lambda: list(PIPELINE_SENTENCES),
        metadata={"help": "Sentences with [MASK] tokens filled by the saved model's pipeline at the end."},
    )


def load_corpus(data_args):
    """DatasetDict(train, validation) with one `text` column: the lines of `--train_files` first, so that
    `--max_train_samples` / `--max_eval_samples` keep them (they kept the movie reviews alone), then the reviews."""
    check_sample_limits(data_args)
    for path in data_args.train_files:
        data.check_user_file("--train_files", path)
        data.check_utf8("--train_files", path)
    parts = {"train": [], "validation": []}
    if data_args.train_files:
        texts = load_dataset("text", data_files=data_args.train_files, split="train")
        texts = texts.filter(lambda row: bool(row["text"].strip()))
        if len(texts) < 2:
            raise ValueError(
                f"`--train_files` {data_args.train_files} hold {len(texts)} non-empty lines; at least 2 are needed "
                f"(one example per line, {data.VALIDATION_FRACTION:.0%} held out for validation)."
            )
        splits = data.split_validation(texts)
        parts["train"].append(splits["train"])
        parts["validation"].append(splits["validation"])
    if not data_args.no_default_corpus:
        reviews = data.movie_reviews("classification").rename_column("sentence", "text").remove_columns("label")
        parts["train"].append(reviews["train"])
        parts["validation"].append(reviews["validation"])
    if not parts["train"]:
        raise ValueError("No corpus: give --train_files or leave out --no_default_corpus.")
    raw = DatasetDict({split: concatenate_datasets(datasets) for split, datasets in parts.items()})
    return limit_samples(raw, data_args)


class MaskingCollator:
    """The data collator of run_mlm.py, for its two kinds of examples.

    Training examples (with an `example_index`, no `labels`) are masked one by one by `masking`, a
    `DataCollatorForLanguageModeling`, from a generator seeded by (`seed`, `epoch`, example index): an example gets
    new masks every epoch, and the same masks whatever batch, padding, process count or data-loader worker it lands
    in. A run resumed from a checkpoint therefore trains on the masks the uninterrupted run would have (a collator
    with one running generator cannot: Trainer checkpoints do not hold its state). `MaskingEpoch` sets `epoch`.

    Examples with `labels` (the evaluation set, masked once by `mask_once`) are not masked again. Either kind is
    then padded by the tokenizer (on its `padding_side`), with each example's `labels` placed on its own positions
    and -100 on the padding, which is not scored. Every evaluation therefore scores the same masked tokens and eval
    losses compare across epochs (masked anew at each evaluation, one model's eval loss moved by as much as a few
    training steps changed it)."""

    def __init__(self, masking, seed):
        self.masking = masking
        self.seed = seed
        self.epoch = 0

    def __call__(self, examples):
        if "labels" not in examples[0]:
            examples = [self.masked(example) for example in examples]
        tokenizer = self.masking.tokenizer
        batch = tokenizer.pad([{k: v for k, v in e.items() if k != "labels"} for e in examples], return_tensors="pt")
        labels = torch.full(batch["input_ids"].shape, -100)  # (B, T): padding is not scored
        for row, example in zip(labels, examples):
            length = len(example["labels"])
            real = row[-length:] if tokenizer.padding_side == "left" else row[:length]
            real.copy_(torch.tensor(example["labels"]))
        batch["labels"] = labels
        return batch

    def masked(self, example):
        """A training example (tokenized with its `special_tokens_mask`) -> its masked `input_ids` and `labels`
        (the original ids of the masked tokens, -100 elsewhere), unpadded."""
        entropy = np.random.SeedSequence((self.seed, self.epoch, example["example_index"]))
        self.masking.generator = torch.Generator().manual_seed(int(entropy.generate_state(1, np.uint64)[0]))
        input_ids, labels = self.masking.torch_mask_tokens(
            torch.tensor([example["input_ids"]]), special_tokens_mask=torch.tensor([example["special_tokens_mask"]])
        )
        return {"input_ids": input_ids[0].tolist(), "attention_mask": example["attention_mask"],
                "labels": labels[0].tolist()}


class MaskingEpoch(TrainerCallback):
    """Tells a `MaskingCollator` the epoch that starts (also the one a resumed run starts in)."""

    def __init__(self, collator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        # state.epoch: the epochs done, a fraction into the current one where a run resumes mid-epoch
        self.collator.epoch = math.floor(state.epoch)


def mask_once(dataset, masking):
    """`dataset` (tokenized, with `special_tokens_mask`) with its tokens masked by `masking` once, in order, as
    `input_ids` and `labels` columns of the examples' own lengths (the same in every process: the collator is
    seeded)."""
    columns = {"input_ids": [], "attention_mask": [], "labels": []}
    for start in range(0, len(dataset), 256):
        rows = dataset.select(range(start, min(start + 256, len(dataset))))
        batch = masking([dict(row) for row in rows])
        for input_ids, attention_mask, labels in zip(batch["input_ids"], batch["attention_mask"], batch["labels"]):
            real = attention_mask.bool()
            columns["input_ids"].append(input_ids[real].tolist())
            columns["attention_mask"].append(attention_mask[real].tolist())
            columns["labels"].append(labels[real].tolist())
    return Dataset.from_dict(columns)


def main(argv=None):
    """Parse the command line (`argv`, default `sys.argv[1:]`), train, evaluate, save to `--output_dir` (only when
    everything succeeded) and return the evaluation metrics."""
    return run_example(
        run,
        (ModelArguments, DataArguments),
        argv,
        writes_predictions=False,
        learning_rate=1e-3,
        num_train_epochs=10,
        per_device_train_batch_size=32,
        per_device_eval_batch_size=128,
        warmup_steps=0.05,
        weight_decay=0.01,
        remove_unused_columns=False,
    )


def check_masking_arguments(training_args):
    """Raise `ValueError` for data-loading settings under which `MaskingCollator` cannot mask per example and epoch."""
    if training_args.remove_unused_columns:
        raise ValueError(
            "`--remove_unused_columns` must be False (the default of run_mlm.py): its data collator reads the "
            "`example_index` and `special_tokens_mask` columns, which are not arguments of the model."
        )
    if training_args.dataloader_persistent_workers and training_args.dataloader_num_workers > 0:
        raise ValueError(
            "`--dataloader_persistent_workers` cannot be used by run_mlm.py: workers that persist keep the data "
            "collator of the first epoch, so every epoch would mask the same tokens. Leave it out."
        )


def check_tokenizer_and_pipeline_inputs(sentences, tokenizer, tokenizer_folder):
    """Refuse, before training, a tokenizer without a mask token (masked-LM training replaces tokens by it), and a
    `--pipeline_inputs` sentence that the closing fill-mask pipeline would fail on after it: one without that
    token."""
    if tokenizer.mask_token is None:
        raise ValueError(
            f"The tokenizer of {tokenizer_folder} has no mask token (`mask_token` is None), which masked-LM training "
            "puts in place of the tokens to predict. Use a tokenizer with one (e.g. [MASK]), or leave out "
            "`--tokenizer_name` / `--model_name_or_path` to train one."
        )
    for sentence in sentences:
        if tokenizer.mask_token not in sentence:
            raise ValueError(
                f"`--pipeline_inputs` sentence {sentence!r} has no {tokenizer.mask_token}: the fill-mask pipeline at "
                f"the end fills {tokenizer.mask_token} tokens, so every sentence needs one or more."
            )


def check_pipeline_lengths(sentences, tokenizer):
    """Refuse, before training, a `--pipeline_inputs` sentence longer than the model (the tokenizer is fitted to
    it): the fill-mask pipeline does not truncate, since a cut could drop the mask, and failed after training."""
    for sentence in sentences:
        length = len(tokenizer(sentence)["input_ids"])
        if length > tokenizer.model_max_length:
            raise ValueError(
                f"`--pipeline_inputs` sentence {sentence[:60]!r}... has {length} tokens, more than the model's "
                f"max_position_embeddings={tokenizer.model_max_length}: the fill-mask pipeline at the end would "
                "fail on it. Shorten it."
            )


def run(model_args, data_args, training_args):
    """Everything after argument parsing; `training_args.output_dir` is the work directory here."""
    check_masking_arguments(training_args)
    raw = load_corpus(data_args)
    new_model_length = data_args.max_seq_length or DEFAULT_MAX_SEQ_LENGTH
    tokenizer = load_or_train_tokenizer(model_args, training_args, raw["train"]["text"], new_model_length)
    check_tokenizer_and_pipeline_inputs(
        data_args.pipeline_inputs, tokenizer, model_args.tokenizer_name or model_args.model_name_or_path
    )

    defaults = {**MODEL_DEFAULTS, **text_model_defaults(tokenizer, new_model_length)}
    config = build_config(model_args, defaults)
    model = load_model(AutoModelForMaskedLM, model_args, training_args, config)
    logger.info("%s: %.2fM parameters", type(model).__name__, model.num_parameters() / 1e6)
    max_length = checked_max_length(data_args.max_seq_length, config)
    fit_tokenizer_to_model(tokenizer, config)
    check_pipeline_lengths(data_args.pipeline_inputs, tokenizer)

    with training_args.main_process_first(desc="tokenizing"):
        tokenized = raw.map(
            lambda batch: tokenizer(
                batch["text"], truncation=True, max_length=max_length, return_special_tokens_mask=True
            ),
            batched=True,
            remove_columns=["text"],
        )
        # each training example's masks are drawn from its index (see MaskingCollator)
        tokenized["train"] = tokenized["train"].map(lambda _, index: {"example_index": index}, with_indices=True)

    def masking(seed=None):
        return DataCollatorForLanguageModeling(tokenizer, mlm_probability=data_args.mlm_probability, seed=seed)

    collator = MaskingCollator(masking(), training_args.seed)
    trainer = SpectralTrainer(
        model=model,
        args=training_args,
        train_dataset=tokenized["train"],
        eval_dataset=mask_once(tokenized["validation"], masking(training_args.seed + 1)),
        processing_class=tokenizer,
        data_collator=collator,
        callbacks=[MaskingEpoch(collator)],
    )

    def perplexity(eval_metrics):
        return {"perplexity": math.exp(min(eval_metrics["eval_loss"], 50.0))}

    metrics = train_evaluate_predict(trainer, training_args, derived_eval_metrics=perplexity)

    if training_args.process_index == 0:
        fill_mask = pipeline(
            "fill-mask", **pipeline_model(model_args, training_args), top_k=3, device=training_args.device
        )
        for sentence in data_args.pipeline_inputs:
            masks = fill_mask(sentence)
            # one list of guesses per mask: the pipeline nests the lists only for sentences with several masks
            for guesses in masks if isinstance(masks[0], list) else [masks]:
                filled = ", ".join(f"{guess['token_str']} {guess['score']:.2f}" for guess in guesses)
                print(f"pipeline: [{filled}] | {sentence}")
    return metrics


if __name__ == "__main__":
    main()
