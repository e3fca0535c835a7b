"""Fine-tune a spectral encoder (or a same-size BERT baseline) for text classification or regression with `Trainer`,
then classify a few sentences with `pipeline("text-classification")`.

Default data: the Pang & Lee movie-review sentences with VADER's human ratings (see `data.py`); label = sign of
the rating (`--task classification`) or the mean rating (`--task regression`). Your own data: `--train_file` /
`--validation_file` (CSV or JSON lines) with a text column and a label column.

    python examples/run_text_classification.py --output_dir outputs/gfnet-sentiment
    python examples/run_text_classification.py --output_dir outputs/afno-rating --model_type afno --task regression
    torchrun --nproc_per_node 2 examples/run_text_classification.py --output_dir outputs/ddp --max_train_samples 512
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Value
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    pipeline,
)

from fourierformers import SpectralTrainer

import data
from common import (
    ModelArguments,
    build_config,
    check_columns,
    check_sample_limits,
    checked_max_length,
    checkpoint_label_names,
    class_names,
    evaluated_label_names,
    fit_tokenizer_to_model,
    label_encoder,
    label_fields,
    limit_samples,
    load_metric,
    load_model,
    load_or_train_tokenizer,
    pipeline_model,
    run_example,
    text_model_defaults,
    train_evaluate_predict,
)

logger = logging.getLogger(__name__)

# The main job's model: tuned on the movie-review sentences within the README's CPU budget.
MODEL_DEFAULTS = dict(
    hidden_size=128,
    num_hidden_layers=2,
    intermediate_size=256,
    num_attention_heads=4,
    hidden_dropout_prob=0.1,
)
DEFAULT_MAX_SEQ_LENGTH = 64
PIPELINE_SENTENCES = [
    "A gorgeous, witty and deeply moving film.",
    "The plot is a tedious mess and the acting is worse.",
    "An uneven but often funny comedy.",
]


@dataclass
class DataArguments:
    task: str = field(
        default="classification",
        metadata={"help": "Predict a class or a number.", "choices": ["classification", "regression"]},
    )
    train_file: str | None = field(default=None, metadata={"help": "CSV / JSON lines training file."})
    validation_file: str | None = field(default=None, metadata={"help": "CSV / JSON lines validation file."})
    text_column_name: str = field(default="sentence", metadata={"help": "Column holding the text."})
    label_column_name: str = field(default="label", metadata={"help": "Column holding the label."})
    max_seq_length: int | None = field(
        default=None,
        metadata={"help": f"Tokens per text after truncation; from scratch also the model's max_position_embeddings "
                  f"(the FFT length). Default: {DEFAULT_MAX_SEQ_LENGTH}, or the fine-tuned model's "
                  "max_position_embeddings."},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only this many training examples."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep only this many evaluation examples."})
    pipeline_inputs: list[str] = field(
        default_factory=lambda: list(PIPELINE_SENTENCES),
        metadata={"help": "Sentences classified by the saved model's pipeline at the end."},
    )


def is_number(text):
    """Whether a label read as a string spells a number."""
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def check_split_columns(dataset, split, data_args):
    """Raise `ValueError` unless the text column of the `split` data holds texts and its label column one label per
    text: a number (finite) for regression, else a class."""
    text_column, label_column = data_args.text_column_name, data_args.label_column_name
    where = f"of the {split} data"
    text_feature = dataset.features[text_column]
    if getattr(text_feature, "dtype", None) not in ("string", "large_string"):
        raise ValueError(
            f"Column {text_column!r} (`--text_column_name`) {where} must hold texts, but holds "
            f"{getattr(text_feature, 'dtype', type(text_feature).__name__)} values such as "
            f"{dataset[0][text_column]!r}: pass the column of the texts to classify."
        )
    label_feature = dataset.features[label_column]
    if not isinstance(label_feature, (Value, ClassLabel)):  # lists (several labels per text) failed in a KeyError
        raise ValueError(
            f"Column {label_column!r} (`--label_column_name`) {where} must hold one label per text, but holds values "
            f"such as {dataset[0][label_column]!r}; this example classifies each text into one class (or one number "
            "with `--task regression`)."
        )
    label_dtype = getattr(label_feature, "dtype", type(label_feature).__name__)
    if data_args.task != "regression":
        return
    if not label_dtype.startswith(("int", "float")):
        values = dataset[label_column]
        # a column of numbers with one word in it (NA, ?) is read as strings: quote that word, not a number
        example = next((value for value in values if not is_number(value)), values[0])
        raise ValueError(
            f"`--task regression` needs numeric labels, but column {label_column!r} {where} holds {label_dtype} "
            f"values such as {example!r}; use `--task classification` for class names."
        )
    labels = np.asarray(dataset[label_column], dtype=np.float64)
    if not np.isfinite(labels).all():  # a NaN target made the loss NaN from the first step on
        row = int(np.flatnonzero(~np.isfinite(labels))[0])  # quoted by its text: its index counts in the split
        raise ValueError(
            f"`--task regression` needs finite labels, but column {label_column!r} {where} holds {labels[row]} for "
            f"the text {dataset[row][text_column]!r}."
        )


def load_raw_data(data_args):
    """The data, checked before anything is trained: both columns present and filled in every split, texts and one
    label per text (finite numbers for regression) in every split."""
    check_sample_limits(data_args)
    data.check_validation_flag("--validation_file", data_args.validation_file, "--train_file", data_args.train_file)
    if data_args.train_file is not None:
        columns = (data_args.text_column_name, data_args.label_column_name)
        raw = data.load_user_data(data_args.train_file, data_args.validation_file, columns)
    else:
        raw = data.movie_reviews(data_args.task)
    check_columns(raw, {"--text_column_name": data_args.text_column_name,
                        "--label_column_name": data_args.label_column_name})
    for split, dataset in raw.items():  # the validation file's columns are read as its own types
        check_split_columns(dataset, split, data_args)
    return limit_samples(raw, data_args)


def main(argv=None):
    """Parse the command line (`argv`, default `sys.argv[1:]`), train, evaluate, save to `--output_dir` (only when
    everything succeeded) and return the evaluation metrics."""
    return run_example(
        run,
        (ModelArguments, DataArguments),
        argv,
        learning_rate=1e-3,
        num_train_epochs=4,
        per_device_train_batch_size=32,
        per_device_eval_batch_size=128,
        warmup_steps=0.1,
        weight_decay=0.01,
    )


def check_evaluated_task(model_path, regression):
    """Raise `ValueError` when an evaluated checkpoint is a regression model and the run reads classes: the labels
    would be refused as not among the checkpoint's one label (its column name), without saying why."""
    if not regression and AutoConfig.from_pretrained(model_path).problem_type == "regression":
        raise ValueError(
            f"`--model_name_or_path` {model_path} is a regression model (problem_type='regression'); evaluate it "
            "with `--task regression`."
        )


def run(model_args, data_args, training_args):
    """Everything after argument parsing; `training_args.output_dir` is the work directory here."""
    raw = load_raw_data(data_args)
    regression = data_args.task == "regression"
    evaluated = evaluated_label_names(model_args, training_args)
    if evaluated is not None:
        check_evaluated_task(model_args.model_name_or_path, regression)
    # Regression: one output named after the label column, so that the pipeline prints e.g. "label 1.234" (an
    # evaluated checkpoint keeps its own name).
    if regression:
        names = evaluated or [data_args.label_column_name]
    else:
        names = class_names(
            raw, data_args.label_column_name, "--label_column_name", known=evaluated,
            checkpoint=checkpoint_label_names(model_args),
        )
        to_id = label_encoder(raw, data_args.label_column_name, names)

    new_model_length = data_args.max_seq_length or DEFAULT_MAX_SEQ_LENGTH
    tokenizer = load_or_train_tokenizer(
        model_args, training_args, raw["train"][data_args.text_column_name], new_model_length
    )

    task_fields = label_fields(names)
    if regression:
        task_fields["problem_type"] = "regression"
    elif training_args.do_train:
        # a regression checkpoint fine-tuned for classes would otherwise keep its regression loss
        task_fields["problem_type"] = "single_label_classification"
    defaults = {**MODEL_DEFAULTS, **text_model_defaults(tokenizer, new_model_length)}
    config = build_config(model_args, defaults, training=training_args.do_train, **task_fields)
    model = load_model(AutoModelForSequenceClassification, model_args, training_args, config)
    logger.info("%s: %.2fM parameters", type(model).__name__, model.num_parameters() / 1e6)
    max_length = checked_max_length(data_args.max_seq_length, config)
    fit_tokenizer_to_model(tokenizer, config)

    def preprocess(batch):
        encoded = tokenizer(batch[data_args.text_column_name], truncation=True, max_length=max_length)
        labels = batch[data_args.label_column_name]
        encoded["labels"] = [float(label) for label in labels] if regression else [to_id(label) for label in labels]
        return encoded

    with training_args.main_process_first(desc="tokenizing"):
        tokenized = raw.map(preprocess, batched=True, remove_columns=raw["train"].column_names)

    metric = load_metric("regression" if regression else "accuracy")

    def compute_metrics(eval_prediction):
        logits = eval_prediction.predictions
        predictions = logits.squeeze(-1) if regression else np.argmax(logits, axis=-1)
        return metric.compute(predictions=predictions, references=eval_prediction.label_ids)

    trainer = SpectralTrainer(
        model=model,
        args=training_args,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
    )

    def write_predictions(prediction_output):
        """`predict_results.txt`: the index of each validation text and the predicted class (or number)."""
        logits = prediction_output.predictions
        predictions = logits.squeeze(-1) if regression else [names[i] for i in np.argmax(logits, axis=-1)]
        lines = ["index\tprediction", *(f"{index}\t{value}" for index, value in enumerate(predictions))]
        Path(training_args.output_dir, "predict_results.txt").write_text("\n".join(lines) + "\n")

    metrics = train_evaluate_predict(trainer, training_args, write_predictions)

    if training_args.process_index == 0:
        classifier = pipeline(
            "text-classification",
            **pipeline_model(model_args, training_args, tokenizer),
            function_to_apply="none" if regression else "softmax",
            device=training_args.device,
        )
        predictions = classifier(data_args.pipeline_inputs, truncation=True)
        for sentence, prediction in zip(data_args.pipeline_inputs, predictions):
            print(f"pipeline: {prediction['label']} {prediction['score']:.3f} | {sentence}")
    return metrics


if __name__ == "__main__":
    main()
