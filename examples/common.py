"""What every example shares: the model arguments, config construction with `--config_overrides`, a WordPiece
tokenizer trained from scratch with `tokenizers`, the local `evaluate` metrics, the examples' default
`TrainingArguments`, checks of the user's data that fail before any training, and the output directory written
only when a run succeeds."""

import ast
import contextlib
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import evaluate
import torch
import transformers
from datasets import ClassLabel
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AutoConfig,
    AutoTokenizer,
    BertConfig,
    HfArgumentParser,
    PreTrainedTokenizerFast,
    TrainingArguments,
    set_seed,
)
from transformers.trainer import TRAINER_STATE_NAME, TRAINING_ARGS_NAME

import fourierformers
from fourierformers.atomic_directory import (
    WEIGHT_FILES, absolute_path, check_output_dir, lies_in, publish, work_dir_for,
)

logger = logging.getLogger(__name__)

FAMILY_CONFIGS = {
    "gfnet": fourierformers.GFNetConfig,
    "afno": fourierformers.AFNOConfig,
    "fnet_hybrid": fourierformers.FNetHybridConfig,
}
# transformers' BERT as a same-size attention baseline, trained by the same script and budget.
BASELINE_CONFIGS = {"bert": BertConfig}
TEXT_MODEL_TYPES = [*FAMILY_CONFIGS, *BASELINE_CONFIGS]
METRICS_DIR = Path(__file__).resolve().parent / "metrics"
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # ids 0..4 = the configs' pad / bos / eos defaults


@dataclass
class ModelArguments:
    model_type: str = field(
        default="gfnet",
        metadata={"help": "Architecture to train from scratch.", "choices": TEXT_MODEL_TYPES},
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "A saved checkpoint to fine-tune (e.g. the output of run_mlm.py)."}
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "A saved tokenizer; by default one is trained on the training texts."}
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated config fields, e.g. 'hidden_size=64,num_hidden_layers=2,"
            "filter_activation=sigmoid,mixer_layout=[\"global_filter\",\"attention\"]'."
        },
    )
    vocab_size: int = field(default=8000, metadata={"help": "Vocabulary size of a tokenizer trained from scratch."})


# Spellings of True / False / None that shells and YAML users type, as transformers' `update_from_string` accepts.
OVERRIDE_WORDS = {"true": True, "false": False, "none": None, "null": None}
# the examples' data options that name files or folders to read
DATA_INPUTS = ("train_file", "validation_file", "train_files", "train_dir", "validation_dir")
# files of which a saved tokenizer has at least one (fast, WordPiece, BPE or SentencePiece vocabularies)
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")


def parse_overrides(text):
    """'a=1,b=x,c=[1,2],d=false' -> {'a': 1, 'b': 'x', 'c': [1, 2], 'd': False}; values are Python literals, JSON
    values (true / false / null inside a list or dict included) or true / false / none / null in any case, else
    strings."""
    if not text:
        return {}
    overrides = {}
    for item in top_level_items(text):
        key, separator, value = item.partition("=")
        if not separator or not key.strip():
            raise ValueError(f"`--config_overrides` entries must look like field=value, got {item!r}.")
        value = value.strip()
        if value.lower() in OVERRIDE_WORDS:
            overrides[key.strip()] = OVERRIDE_WORDS[value.lower()]
            continue
        try:
            overrides[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            try:  # JSON: a strategy dict with `"share_norm": true` stayed a string, refused as a malformed layout
                overrides[key.strip()] = json.loads(value)
            except ValueError:
                overrides[key.strip()] = value
    return overrides


def build_config(model_args, defaults, baselines=None, *, training=True, **task_fields):
    """The model config: from `model_name_or_path` when fine-tuning, else a new config of `model_type` (a family,
    or one of `baselines`, BERT by default) built from the example's `defaults`; then the task's fields (labels,
    vocabulary, ...) and the user's overrides. A saved model that is evaluated without `training` must already
    have the task's fields: its head was trained for them. A model with a condition branch is refused: the examples
    have no condition to pass it."""
    overrides = parse_overrides(model_args.config_overrides)
    from_data = sorted(set(overrides) & set(task_fields))
    if from_data:
        raise ValueError(
            f"`--config_overrides` sets {from_data}, which the example takes from the data and its own arguments "
            "(the label column's classes, `--image_size`, ...): leave them out of the overrides."
        )
    if model_args.model_name_or_path is not None:
        if not training:
            check_saved_task_fields(model_args.model_name_or_path, task_fields)
        config, unused = AutoConfig.from_pretrained(
            model_args.model_name_or_path, return_unused_kwargs=True, **task_fields, **overrides
        )
        unknown = sorted(set(unused) & set(overrides))
        if unknown:
            raise ValueError(f"Unknown config fields in `--config_overrides` for {config.model_type}: {unknown}.")
    else:
        config_classes = {**FAMILY_CONFIGS, **(BASELINE_CONFIGS if baselines is None else baselines)}
        if model_args.model_type not in config_classes:
            raise ValueError(f"`--model_type` must be one of {list(config_classes)}, got {model_args.model_type!r}.")
        config_class = config_classes[model_args.model_type]
        unknown = sorted(set(overrides) - set(config_class().to_dict()))
        if unknown:
            raise ValueError(f"Unknown config fields in `--config_overrides` for {model_args.model_type}: {unknown}.")
        config = config_class(**{**defaults, **task_fields, **overrides})
    if getattr(config, "condition_type", None) is not None:
        raise ValueError(
            f"The model has condition_type={config.condition_type!r}, which needs a `condition` with every input; "
            "the examples have no condition data to pass. Use a model without a condition branch (condition_type "
            "None)."
        )
    return config


def check_saved_task_fields(model_path, task_fields):
    """Raise `ValueError` when the model saved in `model_path` was trained for other labels than the data's."""
    saved = AutoConfig.from_pretrained(model_path)
    for name, value in task_fields.items():
        if getattr(saved, name, None) != value:
            raise ValueError(
                f"`--model_name_or_path` {model_path} was trained with {name}={getattr(saved, name, None)!r}, but the "
                f"data needs {name}={value!r}; evaluate it on data with its labels, or fine-tune it with `--do_train`."
            )


def top_level_items(text):
    """`text` split at the commas outside brackets, braces and quotes: 'a=1,b=[1,2],c={"x":1,"y":2}' -> 'a=1',
    'b=[1,2]', 'c={"x":1,"y":2}' (a `mixer_layout` of strategy dicts stays one value)."""
    items, start, depth, quote = [], 0, 0, None
    for position, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            items.append(text[start:position])
            start = position + 1
    return [*items, text[start:]]


def train_wordpiece_tokenizer(texts, vocab_size, model_max_length):
    """A BERT-style WordPiece tokenizer (lower-cased, `[CLS] text [SEP]`) trained on `texts`, wrapped as a
    transformers fast tokenizer; the same texts give the same vocabulary in every process. Special tokens get ids
    0..4 in the order of `SPECIAL_TOKENS`, the other tokens follow in sorted order."""
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # The trainer numbers the continuation pieces `##c` in hash-map order, which changes from one process to the
    # next, and breaks ties between equally frequent merges by those numbers: the token set at the vocabulary-size
    # cutoff differed between processes. Handing it every piece first, sorted, fixes their numbers (the trainer
    # would have created the same pieces, so the vocabulary keeps its size and content otherwise).
    texts = list(texts)
    inner_chars = set()
    for text in texts:
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)):
            inner_chars.update(word[1:])
    pieces = [f"##{char}" for char in sorted(inner_chars)]
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=[*SPECIAL_TOKENS, *pieces], show_progress=False
    )
    training = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    training.normalizer, training.pre_tokenizer = normalizer, pre_tokenizer
    training.train_from_iterator(texts, trainer=trainer)
    # A fresh tokenizer, since training registered the pieces as special (added) tokens.
    tokenizer = Tokenizer(models.WordPiece(vocab=canonical_vocabulary(training.get_vocab()), unk_token="[UNK]"))
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizer, pre_tokenizer
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
        # transformers' default leaves token_type_ids out: a sentence pair would lose its segment ids
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


def load_or_train_tokenizer(model_args, training_args, texts, max_seq_length):
    """The tokenizer of `--tokenizer_name` or `--model_name_or_path`, else of the checkpoint a training run resumes
    from (Trainer saved it there: one trained again, on data changed since, would give the trained embeddings other
    tokens), else a WordPiece tokenizer trained on `texts` (an iterable of strings, read only by the main process),
    saved to the output directory, from where the other processes load it."""
    resumed = training_args.resume_from_checkpoint if training_args.do_train else None
    for flag, folder in [("--tokenizer_name", model_args.tokenizer_name),
                         ("--model_name_or_path", model_args.model_name_or_path),
                         ("--resume_from_checkpoint", resumed)]:
        if not folder:
            continue
        if not any((Path(folder) / name).exists() for name in TOKENIZER_FILES):
            raise ValueError(
                f"`{flag}` {folder} holds no tokenizer (none of {list(TOKENIZER_FILES)}): a model saved without one "
                "needs `--tokenizer_name` with the folder of the tokenizer it was trained with, e.g. the "
                "`--output_dir` of the run that trained it."
            )
        return AutoTokenizer.from_pretrained(folder)
    # global, as the training below is on process 0 alone: another node's main process must wait for it too
    with training_args.main_process_first(local=False, desc="training the tokenizer"):
        if training_args.process_index == 0:
            tokenizer = train_wordpiece_tokenizer(texts, model_args.vocab_size, max_seq_length)
            tokenizer.save_pretrained(training_args.output_dir)
        else:
            tokenizer = AutoTokenizer.from_pretrained(training_args.output_dir)
    return tokenizer


def canonical_vocabulary(vocab):
    """The trained vocabulary renumbered from its token set: special tokens first, then the others sorted.
    WordPiece's greedy longest-match tokenisation depends only on the set of tokens, so renumbering changes no
    tokenisation, and one seed gives one initial embedding per token."""
    others = sorted(token for token in vocab if token not in SPECIAL_TOKENS)
    return {token: index for index, token in enumerate([*SPECIAL_TOKENS, *others])}


def fit_tokenizer_to_model(tokenizer, config):
    """Make the tokenizer truncate where the model ends: its `model_max_length`, saved with it and applied by
    `truncation=True` (in pipelines too), becomes the model's `max_position_embeddings`, whatever length the
    tokenizer was trained or saved with. A tokenizer with more tokens than the model's vocabulary is refused: its
    last ids have no embedding (the first batch to hold one failed, in training or after it)."""
    if len(tokenizer) > config.vocab_size:
        raise ValueError(
            f"The tokenizer has {len(tokenizer)} tokens, but the model's vocab_size is {config.vocab_size}: ids from "
            f"{config.vocab_size} on have no embedding. Use the tokenizer the model was trained with "
            "(`--tokenizer_name`), or train a new model with this one."
        )
    tokenizer.model_max_length = config.max_position_embeddings


def label_names(config):
    """A config's label names, in id order."""
    return [config.id2label[index] for index in range(config.num_labels)]


def checkpoint_label_names(model_args):
    """The label names, in id order, of the checkpoint the run starts from (`--model_name_or_path`), or None."""
    if model_args.model_name_or_path is None:
        return None
    return label_names(AutoConfig.from_pretrained(model_args.model_name_or_path))


def evaluated_label_names(model_args, training_args):
    """The label names, in id order, of the checkpoint that a run without `--do_train` evaluates: its outputs are
    fixed, and the data may hold any of its labels (an evaluation set rarely holds every class or tag). None for a
    run that trains, whose labels come from the data."""
    return None if training_args.do_train else checkpoint_label_names(model_args)


def label_fields(names):
    """Config fields of a head with one output per name, in order."""
    return dict(num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})


def text_model_defaults(tokenizer, max_seq_length):
    """Config fields that follow from the tokenizer and the sequence length (the FFT length of the mixers)."""
    return dict(
        vocab_size=len(tokenizer),
        max_position_embeddings=max_seq_length,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )


def checked_max_length(max_seq_length, config):
    """Tokens per text: `--max_seq_length`, or the model's `max_position_embeddings` (its FFT length) when not
    given. A longer `--max_seq_length` raises `ValueError`: the model cannot take such texts."""
    if max_seq_length is None:
        return config.max_position_embeddings
    if max_seq_length > config.max_position_embeddings:
        raise ValueError(
            f"`--max_seq_length` {max_seq_length} is longer than the model's max_position_embeddings "
            f"({config.max_position_embeddings}); pass `--max_seq_length {config.max_position_embeddings}` or less."
        )
    return max_seq_length


def load_model(auto_class, model_args, training_args, config):
    """The model of `config`: new, or `--model_name_or_path`. Fine-tuning newly initialises the task head when the
    checkpoint has none or one of another size (other labels), and a pooler the checkpoint lacks; any other weight
    that is missing from the checkpoint or does not fit `config` raises `ValueError` (`check_backbone_fits`).
    Evaluating without `--do_train` needs every weight from the checkpoint, since an untrained head would only give
    chance results."""
    if model_args.model_name_or_path is None:
        return auto_class.from_config(config)
    model, loading_info = auto_class.from_pretrained(
        model_args.model_name_or_path, config=config, ignore_mismatched_sizes=True, output_loading_info=True
    )
    check_backbone_fits(model, model_args.model_name_or_path, config, loading_info)
    untrained = sorted(loading_info["missing_keys"]) + sorted(key for key, *_ in loading_info["mismatched_keys"])
    if untrained and not training_args.do_train:
        raise ValueError(
            f"`--model_name_or_path` {model_args.model_name_or_path} has no weights for {untrained[:5]} of "
            f"{type(model).__name__}: `--do_eval` / `--do_predict` without `--do_train` need a checkpoint trained "
            "for this task (fine-tune this one with `--do_train`)."
        )
    if training_args.process_index == 0:
        warn_of_a_head_kept_for_other_labels(model, model_args.model_name_or_path, untrained)
    return model


def warn_of_a_head_kept_for_other_labels(model, model_path, untrained):
    """Log a warning where the task head of `model_path`, trained for as many labels as the data's but other ones,
    was loaded (none of its weights `untrained`): its outputs now stand for the data's labels, in their order, as in
    transformers' examples. A head of the same labels keeps their order (`class_names`)."""
    head = [name for name, _ in model.named_parameters() if not name.startswith(f"{model.base_model_prefix}.")]
    if not head or set(head) & set(untrained):
        return
    trained, names = label_names(AutoConfig.from_pretrained(model_path)), label_names(model.config)
    if sorted(trained) != sorted(names) and trained != [f"LABEL_{index}" for index in range(len(trained))]:
        logger.warning(
            "The task head of %s was trained for the labels %s; it keeps its weights, and its outputs now stand for "
            "the data's labels %s in this order.", model_path, trained, names
        )


# Config entries that differ between a checkpoint and its fine-tuned config without changing a backbone weight.
TASK_CONFIG_KEYS = {"architectures", "id2label", "label2id", "problem_type", "transformers_version", "_name_or_path",
                    "dtype", "torch_dtype"}


def first_keys(keys):
    """The first five of `keys` and how many more there are, for a message."""
    return f"{keys[:5]}{f' and {len(keys) - 5} more' if len(keys) > 5 else ''}"


def check_backbone_fits(model, model_path, config, loading_info):
    """Raise `ValueError` when a weight of `model` outside the task head (its `base_model_prefix` submodule:
    embeddings, blocks, pooler) has another shape in the checkpoint or is missing from it, or a trained backbone
    weight of the checkpoint has no place in `model` (the pooler's excepted), naming the weights and the config
    fields that differ from the checkpoint's; `loading_info` is what `from_pretrained(..., output_loading_info=True)`
    returned. Only the head may change size (other labels), and only it and the pooler may be newly initialised
    (masked-LM and bare-backbone checkpoints have no classification head, nor a pooler projection): re-initialising
    any other weight, e.g. the blocks that `--config_overrides` adds or whose mixer it changes, would silently
    fine-tune a partly untrained model, and dropping one (a mixer replaced by a parameter-free one) a model other
    than the checkpoint's."""
    backbone = f"{model.base_model_prefix}."
    # Weights a checkpoint may lack or have beyond the model's: the pooler's, and the mask token of a ViT trained
    # for masked image modelling.
    optional = (f"{backbone}pooler.", f"{backbone}embeddings.mask_token")
    # transformers names missing weights as the model does, prefix included, also for a bare-backbone checkpoint.
    missing = sorted(
        key for key in loading_info["missing_keys"] if key.startswith(backbone) and not key.startswith(optional)
    )
    # trained weights the model has no place for: a layer whose mixer became a parameter-free one ("fourier", "none")
    unused = sorted(
        key for key in loading_info["unexpected_keys"] if key.startswith(backbone) and not key.startswith(optional)
    )
    mismatched = sorted(
        (key, tuple(saved), tuple(wanted))
        for key, saved, wanted in loading_info["mismatched_keys"]
        if key.startswith(backbone)
    )
    if not (missing or mismatched or unused):
        return
    problems = []
    if mismatched:
        shapes = "; ".join(
            f"{key} {saved} in the checkpoint, {wanted} in the model" for key, saved, wanted in mismatched[:5]
        )
        problems.append(
            f"Weights of `--model_name_or_path` {model_path} outside the task head do not fit the requested "
            f"{type(model).__name__} ({len(mismatched)} in all): {shapes}{'; ...' if len(mismatched) > 5 else ''}."
        )
    if missing:
        problems.append(
            f"The requested {type(model).__name__} has {len(missing)} weights outside the task head and pooler "
            f"that `--model_name_or_path` {model_path} lacks: {first_keys(missing)}."
        )
    if unused:
        problems.append(
            f"{len(unused)} trained weights of `--model_name_or_path` {model_path} outside the task head and pooler "
            f"have no place in the requested {type(model).__name__} and would be dropped: {first_keys(unused)}."
        )
    saved_config = AutoConfig.from_pretrained(model_path).to_dict()
    requested = config.to_dict()
    differing = [
        f"{name}={requested[name]!r} (checkpoint: {saved_config[name]!r})"
        for name in sorted(set(saved_config) & set(requested) - TASK_CONFIG_KEYS)
        if saved_config[name] != requested[name]
    ]
    raise ValueError(
        f"{' '.join(problems)} The config differs from the checkpoint's in {', '.join(differing) or 'no field'}; "
        "only the task head may change size (other labels), and only it and the pooler may be newly initialised or "
        "dropped. Leave out the `--config_overrides` fields that set weight shapes or add or remove weights "
        "(hidden_size, vocab_size, max_position_embeddings, num_hidden_layers, mixer_layout, image_size of a ViT, "
        "...), or train a new model without `--model_name_or_path`."
    )


def train_evaluate_predict(trainer, training_args, write_predictions=None, derived_eval_metrics=None):
    """The run's phases: `--do_train` (then save the model), `--do_eval` and `--do_predict` (on the evaluation
    data; `write_predictions(prediction_output)` writes them to the output directory from the main process).
    `derived_eval_metrics(metrics)` returns metrics computed from the evaluation's. Each phase's metrics are
    logged and saved to `<phase>_results.json` and `all_results.json`; returns them all."""
    all_metrics = {}

    def record(phase, metrics):
        trainer.log_metrics(phase, metrics)
        trainer.save_metrics(phase, metrics)
        all_metrics.update(metrics)

    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        trainer.save_model()
        trainer.save_state()  # trainer_state.json: the run's log history and its best checkpoint
        record("train", train_result.metrics)
    if training_args.do_eval:
        metrics = trainer.evaluate()
        record("eval", {**metrics, **(derived_eval_metrics(metrics) if derived_eval_metrics else {})})
    if training_args.do_predict:
        prediction_output = trainer.predict(trainer.eval_dataset, metric_key_prefix="predict")
        record("predict", prediction_output.metrics)
        if trainer.is_world_process_zero():
            write_predictions(prediction_output)
    return all_metrics


def pipeline_model(model_args, training_args, tokenizer=None):
    """Where the pipeline that ends each example loads its model from: the saved output of a run that trained,
    else the evaluated checkpoint, with the run's `tokenizer` where given (fitted to the model's length, which a
    `--tokenizer_name` folder may not be), else `--tokenizer_name` when given."""
    if training_args.do_train:
        return dict(model=training_args.output_dir)
    tokenizer = tokenizer or getattr(model_args, "tokenizer_name", None)
    return dict(model=model_args.model_name_or_path, tokenizer=tokenizer)


def load_metric(name):
    """One of the metric modules shipped in `examples/metrics/` (accuracy, regression, entity_f1)."""
    return evaluate.load(str(METRICS_DIR / name))


def accelerator_available():
    """Whether torch sees a GPU or another accelerator."""
    return torch.accelerator.is_available()


def set_training_defaults(parser, **defaults):
    """Defaults of the example's `TrainingArguments` so that `--output_dir` alone runs a sensible job; every
    `TrainingArguments` flag still overrides them."""
    parser.set_defaults(
        eval_strategy="epoch",
        save_strategy="no",
        logging_steps=50,
        report_to="none",
        ddp_find_unused_parameters=False,
        # Without an accelerator, transformers sets up DDP under torchrun / accelerate launch only with use_cpu:
        # otherwise every process trains alone as rank 0 of 1.
        use_cpu=not accelerator_available(),
        # None = not given, resolved by `ExampleTrainingArguments`.
        do_train=None,
        do_eval=None,
        do_predict=None,
        **defaults,
    )


def run_example(run, argument_classes, argv=None, writes_predictions=True, **training_defaults):
    """An example's `main`: parse its (model arguments, data arguments) classes and `ExampleTrainingArguments`
    from `argv` (default `sys.argv[1:]`) with the example's `training_defaults`, set up logging and the seed, then
    `run(model_args, data_args, training_args)` with the output directory written only when it succeeds
    (`output_dir_written_on_success`). An example that `writes_predictions=False` refuses `--do_predict`.
    Returns what `run` returns (the metrics)."""
    parser = HfArgumentParser((*argument_classes, ExampleTrainingArguments))
    set_training_defaults(parser, **training_defaults)
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    if training_args.do_predict and not writes_predictions:
        raise ValueError("This example has no predictions to write (`--do_eval` reports its metrics, such as "
                         "run_mlm.py's loss and perplexity); leave out `--do_predict`.")
    check_phases(model_args, training_args)
    check_evaluation_data(data_args, training_args)
    check_argument_values(model_args, data_args)
    check_saved_folders(model_args)
    check_inputs_survive(model_args, data_args, training_args)
    check_resume_checkpoint(training_args)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    transformers.utils.logging.set_verbosity_warning()
    set_seed(training_args.seed)
    with output_dir_written_on_success(training_args):
        return run(model_args, data_args, training_args)


@dataclass
class ExampleTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus `--overwrite_output_dir` (which transformers 5 no longer has), and `--do_train`,
    `--do_eval`, `--do_predict` as the examples read them: none of them given trains and evaluates."""

    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Replace --output_dir even when it is not empty and holds something other than an earlier "
                  "run's output."},
    )
    do_train: bool = field(
        default=False,
        metadata={"help": "Train, then save the model. Without --do_train, --do_eval and --do_predict an example "
                  "trains and evaluates."},
    )
    do_eval: bool = field(
        default=False,
        metadata={"help": "Evaluate on the validation data (with --do_train: after training, and every epoch "
                  "under --eval_strategy epoch, the default; alone: the --model_name_or_path model, unchanged)."},
    )
    do_predict: bool = field(
        default=False,
        metadata={"help": "Write the model's predictions on the validation data to the output directory "
                  "(classification examples)."},
    )

    def __post_init__(self):
        requested = (self.do_train, self.do_eval, self.do_predict)
        if requested == (None, None, None):  # none given on the command line (see `set_training_defaults`)
            requested = (True, True, False)
        self.do_train, self.do_eval, self.do_predict = (bool(flag) for flag in requested)
        super().__post_init__()
        # TrainingArguments turns do_eval on with any eval_strategy, which schedules evaluations during training
        # only: without training, --do_eval is what was asked.
        if not self.do_train:
            self.do_eval = bool(requested[1])


def check_phases(model_args, training_args):
    """Raise `ValueError` for a run with nothing to do, a training run of no optimizer steps (it would publish the
    untrained model as a result), or one that evaluates (`--do_eval` / `--do_predict` without `--do_train`) anything
    but an unchanged saved model."""
    if training_args.do_train:
        if training_args.gradient_accumulation_steps < 1:
            raise ValueError(
                f"`--gradient_accumulation_steps` must be a positive integer, got "
                f"{training_args.gradient_accumulation_steps}."
            )
        if training_args.max_steps <= 0 and training_args.num_train_epochs <= 0:
            raise ValueError(
                f"Training would take no step: `--num_train_epochs` is {training_args.num_train_epochs} and "
                f"`--max_steps` {training_args.max_steps}; give a positive number of epochs or steps."
            )
        return
    if not (training_args.do_eval or training_args.do_predict):
        raise ValueError("Nothing to do: give `--do_train`, `--do_eval` or `--do_predict` (or none of them: train "
                         "and evaluate).")
    if model_args.model_name_or_path is None:
        raise ValueError("`--do_eval` / `--do_predict` without `--do_train` evaluate a saved model: pass its folder "
                         "with `--model_name_or_path`.")
    if model_args.config_overrides:
        raise ValueError("`--config_overrides` would change the model that `--do_eval` / `--do_predict` evaluate "
                         "without `--do_train`; leave it out, or add `--do_train` to fine-tune.")


def check_evaluation_data(data_args, training_args):
    """Raise `ValueError` for a run without `--do_train` given a training file or folder but no validation one:
    the validation split of a training run is cut from it at random (a tenth), so such a run would evaluate an
    arbitrary part of the data, its predictions numbered in that part."""
    if training_args.do_train:
        return
    for train_flag, validation_flag in (("train_file", "validation_file"), ("train_dir", "validation_dir")):
        if getattr(data_args, train_flag, None) is not None and getattr(data_args, validation_flag, None) is None:
            raise ValueError(
                f"`--do_eval` / `--do_predict` without `--do_train` evaluate `--{validation_flag}`, which is missing: "
                f"a tenth of `--{train_flag}` would be cut at random to evaluate. To evaluate all of it, give the "
                f"same path to both."
            )


def check_argument_values(model_args, data_args):
    """Refuse values that would only fail later, or not at all, with a message that does not name them: a
    `--max_seq_length` without room for [CLS], [SEP] and a token of text (0 also meant the default length), a
    `--vocab_size` below one, and an `--mlm_probability` that masks nothing (a run that trains nothing and
    reports a loss of 0)."""
    max_seq_length = getattr(data_args, "max_seq_length", None)
    if max_seq_length is not None and max_seq_length < 3:
        raise ValueError(
            f"`--max_seq_length` must be at least 3 ([CLS], [SEP] and one token of text), got {max_seq_length}."
        )
    vocab_size = getattr(model_args, "vocab_size", None)
    if vocab_size is not None and vocab_size < 1:
        raise ValueError(f"`--vocab_size` must be a positive number of tokens, got {vocab_size}.")
    mlm_probability = getattr(data_args, "mlm_probability", None)
    if mlm_probability is not None and not 0 < mlm_probability <= 1:
        raise ValueError(
            f"`--mlm_probability` must be in (0, 1], the fraction of tokens masked, got {mlm_probability}."
        )


def check_saved_folders(model_args):
    """Raise `FileNotFoundError` when `--model_name_or_path` or `--tokenizer_name` is not a folder (nothing is
    loaded from the Hugging Face hub)."""
    for flag in ("model_name_or_path", "tokenizer_name"):
        path = getattr(model_args, flag, None)
        if path is not None and not Path(path).is_dir():
            raise FileNotFoundError(
                f"`--{flag}` {path} is not a folder; pass a folder written by `save_pretrained`, e.g. the "
                "`--output_dir` of an earlier run (the examples load nothing from the Hugging Face hub)."
            )


def resumes_in_work_dir(training_args):
    """Whether the run resumes from a checkpoint in its work directory, which it then keeps."""
    resume = training_args.resume_from_checkpoint
    return resume is not None and lies_in(resume, work_dir_for(training_args.output_dir))


def check_inputs_survive(model_args, data_args, training_args):
    """Raise `ValueError` when the run would delete the data, model or tokenizer it loads. Every run replaces
    `--output_dir` when it ends, so the data files and folders must not lie in it; nor may `--model_name_or_path`
    and `--tokenizer_name` without `--do_train` (a run with `--do_train` may replace the checkpoint it fine-tunes by
    the fine-tuned model). A run that does not resume from its work directory `<output_dir>.incomplete` deletes
    that when it starts, so the model and tokenizer may not lie there either, and the data never."""
    output_dir = Path(training_args.output_dir)
    work_dir = work_dir_for(output_dir)
    for flag in DATA_INPUTS:
        paths = getattr(data_args, flag, None) or []
        for path in [paths] if isinstance(paths, str) else paths:
            if lies_in(path, output_dir) or lies_in(path, work_dir):
                raise ValueError(
                    f"`--{flag}` {path} lies in `--output_dir` {output_dir} (or its work directory {work_dir}), "
                    "which the run replaces: the data would be deleted. Move it elsewhere, or pass another "
                    "`--output_dir`."
                )
    for flag in ("model_name_or_path", "tokenizer_name"):
        path = getattr(model_args, flag, None)
        if path is None:
            continue
        if not training_args.do_train and lies_in(path, output_dir):
            raise ValueError(
                f"`--{flag}` {path} is (or lies in) `--output_dir` {output_dir}, which a run without `--do_train` "
                "replaces with its metrics and predictions when it ends: the model would be lost. Pass another "
                "`--output_dir`."
            )
        if not resumes_in_work_dir(training_args) and lies_in(path, work_dir):
            raise ValueError(
                f"`--{flag}` {path} lies in the work directory {work_dir} of `--output_dir` {output_dir}, which the "
                "run deletes when it starts (it keeps it only when resuming with `--resume_from_checkpoint "
                f"{work_dir}/checkpoint-N`). Copy it elsewhere, or pass another `--output_dir`."
            )


def checkpoints_in(folder):
    """The end of a message about a missing checkpoint: the `checkpoint-N` folders that `folder` holds."""
    if not folder.is_dir():
        return f"{folder} does not exist"
    found = sorted((path.name for path in folder.glob("checkpoint-*") if path.is_dir()), key=lambda n: (len(n), n))
    return f"{folder} holds {found}" if found else f"{folder} holds no checkpoint-N folder"


def check_resume_checkpoint(training_args):
    """Raise `FileNotFoundError` when `--resume_from_checkpoint` (read only with `--do_train`) is not a Trainer
    checkpoint folder (trainer_state.json and weights), or when it records a best checkpoint that no longer exists
    and `--load_best_model_at_end` is set: Trainer would ignore that best model and end with the last one."""
    path = training_args.resume_from_checkpoint
    if path is None or not training_args.do_train:
        return
    checkpoint = Path(path)
    if not checkpoint.is_dir():
        raise FileNotFoundError(
            f"`--resume_from_checkpoint` {path} is not a folder ({checkpoints_in(checkpoint.parent)}); pass a "
            "checkpoint-N folder that a run with `--save_strategy steps` or `epoch` wrote."
        )
    has_weights = any((checkpoint / name).is_file() for name in WEIGHT_FILES)
    if not (checkpoint / TRAINER_STATE_NAME).is_file() or not has_weights:
        contents = sorted(entry.name for entry in checkpoint.iterdir())
        raise FileNotFoundError(
            f"`--resume_from_checkpoint` {path} is not a Trainer checkpoint: it needs {TRAINER_STATE_NAME} and model "
            f"weights, and holds {contents[:8]}{' ...' if len(contents) > 8 else ''} "
            f"({checkpoints_in(checkpoint.parent)})."
        )
    best = json.loads((checkpoint / TRAINER_STATE_NAME).read_text()).get("best_model_checkpoint")
    if best is not None and training_args.load_best_model_at_end and not Path(best).is_dir():
        raise FileNotFoundError(
            f"The best checkpoint {best} recorded in {checkpoint / TRAINER_STATE_NAME} no longer exists "
            f"({checkpoints_in(Path(best).parent)}): with `--load_best_model_at_end` the resumed run could not end "
            "with the best model. Restore that folder, or resume without `--load_best_model_at_end`."
        )


@contextlib.contextmanager
def output_dir_written_on_success(training_args):
    """Run the example in a work directory beside `--output_dir` (`<output_dir>.incomplete`) and move it to
    `--output_dir` only when the block succeeds: a failed run leaves `--output_dir` absent or as it was.

    An existing `--output_dir` is replaced when it is empty or holds an earlier run's output only; anything else
    stops the run before it starts, unless `--overwrite_output_dir`. Trainer checkpoints (`--save_strategy steps`
    or `epoch`) are written to the work directory; a failed run keeps it when it holds any, so that training can go
    on with `--resume_from_checkpoint <output_dir>.incomplete/checkpoint-N` and the same `--output_dir`.
    Every process enters the block; the main process prepares the work directory and publishes it."""
    output_dir = absolute_path(training_args.output_dir)
    check_output_dir(output_dir, training_args.overwrite_output_dir, overwrite_option="--overwrite_output_dir")
    work_dir = work_dir_for(output_dir)
    resuming = resumes_in_work_dir(training_args)
    is_main = training_args.process_index == 0
    with training_args.main_process_first(local=False, desc="preparing the work directory"):
        if is_main and not resuming:
            shutil.rmtree(work_dir, ignore_errors=True)
        work_dir.mkdir(parents=True, exist_ok=True)
    training_args.output_dir = str(work_dir)
    try:
        yield
    except BaseException:
        if is_main:
            if any(work_dir.glob("checkpoint-*")):
                logger.error(
                    "The run failed; %s keeps its Trainer checkpoints: resume with --resume_from_checkpoint "
                    "%s/checkpoint-N and the same --output_dir.", work_dir, work_dir,
                )
            else:
                shutil.rmtree(work_dir, ignore_errors=True)
        raise
    finally:
        training_args.output_dir = str(output_dir)
    if is_main:
        point_saved_state_to(output_dir, work_dir, training_args)
        publish(work_dir, output_dir)


def point_saved_state_to(output_dir, work_dir, training_args):
    """Trainer saved its arguments (`output_dir`) and each checkpoint's state (`best_model_checkpoint`) with paths
    in the work directory: rewrite them to where the work directory is about to be published, so that resuming
    from a published checkpoint finds its best model. A run resumed from a checkpoint published in `output_dir`
    can still name a best checkpoint there, which publishing deletes: that one is copied into the work directory.
    `training_args.output_dir` is `output_dir` again here."""
    for folder in [work_dir, *work_dir.glob("checkpoint-*")]:
        if (folder / TRAINING_ARGS_NAME).exists():
            torch.save(training_args, folder / TRAINING_ARGS_NAME)
    # the run's final state too: its best checkpoint may lie outside every checkpoint Trainer kept (save_total_limit)
    for state_file in [*work_dir.glob(f"checkpoint-*/{TRAINER_STATE_NAME}"), *work_dir.glob(TRAINER_STATE_NAME)]:
        state = json.loads(state_file.read_text())
        best = None if state.get("best_model_checkpoint") is None else Path(state["best_model_checkpoint"])
        # Paths are compared resolved: a resumed run may spell `--output_dir` otherwise than the run that wrote the
        # checkpoint (from another folder, through `..` or a symbolic link).
        if best is not None and lies_in(best, work_dir):
            state["best_model_checkpoint"] = str(output_dir / best.resolve().relative_to(work_dir.resolve()))
            state_file.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        elif best is not None and lies_in(best, output_dir) and best.is_dir():
            kept = work_dir / best.resolve().relative_to(output_dir.resolve())
            if not kept.exists():
                shutil.copytree(best, kept)


def check_sample_limits(data_args):
    """`--max_train_samples` / `--max_eval_samples` must be positive when given."""
    for name in ("max_train_samples", "max_eval_samples"):
        value = getattr(data_args, name)
        if value is not None and value < 1:
            raise ValueError(f"`--{name}` must be a positive number of examples, got {value}.")


def limit_samples(raw, data_args):
    """Keep the first `--max_train_samples` / `--max_eval_samples` examples of the train / validation splits."""
    for split, limit in (("train", data_args.max_train_samples), ("validation", data_args.max_eval_samples)):
        if limit is not None:
            raw[split] = raw[split].select(range(min(limit, len(raw[split]))))
    return raw


def check_columns(raw, columns):
    """Raise `ValueError` when a split lacks one of `columns` (flag -> column name) or has empty values in it.
    (Files loaded together share their columns: one that a validation file lacks is there, but empty.)"""
    for split, dataset in raw.items():
        for flag, column in columns.items():
            if column not in dataset.column_names:
                raise ValueError(
                    f"Column {column!r} (`{flag}`) not found in the {split} data, whose columns are "
                    f"{dataset.column_names}: pass `{flag}` with one of them."
                )
            empty = sum(value is None for value in dataset[column])
            if empty == dataset.num_rows:
                filled = [name for name in dataset.column_names if any(v is not None for v in dataset[name])]
                raise ValueError(
                    f"Column {column!r} (`{flag}`) is missing or empty in the {split} data, whose filled columns "
                    f"are {filled}: pass `{flag}` with one of them."
                )
            if empty:
                raise ValueError(
                    f"Column {column!r} (`{flag}`) of the {split} data has {empty} empty values; fill or drop those "
                    "rows."
                )


def class_names(raw, column, flag, known=None, checkpoint=None):
    """Class names in label-id order for a column of labels (or of lists of labels): the ClassLabel names, else the
    sorted distinct values of the training split as strings (integer ids in numeric order), `O` first when present
    (BIO tags). Raises `ValueError` for floating-point labels, fewer than two classes, or validation labels the
    training split does not have. With `known` (the names of an evaluated checkpoint, `evaluated_label_names`)
    those are the names, and every label of the data must be one of them. With `checkpoint` (the names of the
    checkpoint a training run starts from) where they are the data's names in another order, the checkpoint's
    order: its classifier keeps the meaning of each output, as in transformers' `run_glue`."""
    feature = raw["train"].features[column]
    feature = getattr(feature, "feature", feature)  # the element feature of a list column
    if known is not None:
        present = set().union(*(label_strings(dataset[column], feature) for dataset in raw.values()))
        unknown = sorted(present - set(known))
        if unknown:
            raise ValueError(
                f"Labels {unknown[:10]} of column {column!r} (`{flag}`) are not among the {len(known)} labels of the "
                f"evaluated checkpoint, {known[:20]}; evaluate it on data with its labels, or fine-tune it with "
                "`--do_train`."
            )
        return list(known)
    names = data_class_names(raw, column, flag)
    if checkpoint is not None and sorted(checkpoint) == sorted(names):
        return list(checkpoint)
    return names


def data_class_names(raw, column, flag):
    """The class names of `class_names` read from the data alone."""
    feature = raw["train"].features[column]
    feature = getattr(feature, "feature", feature)
    if isinstance(feature, ClassLabel):
        return list(feature.names)
    if getattr(feature, "dtype", None) in ("float16", "float32", "float64"):
        raise ValueError(
            f"Column {column!r} (`{flag}`) holds floating-point values such as "
            f"{next(iter(flatten(raw['train'][column])))!r}; classes are names (strings) or integer ids. "
            "For numeric targets use `--task regression` (text classification)."
        )
    names = {split: {str(value) for value in flatten(dataset[column])} for split, dataset in raw.items()}
    if len(names["train"]) < 2:
        raise ValueError(
            f"Column {column!r} (`{flag}`) of the training data has {len(names['train'])} class "
            f"({sorted(names['train'])}); classification needs at least two."
        )
    unknown = names.get("validation", set()) - names["train"]
    if unknown:
        raise ValueError(
            f"Labels {sorted(unknown)[:10]} of column {column!r} (`{flag}`) occur in the validation data but not in "
            f"the training data, whose classes are {sorted(names['train'])[:20]}."
        )
    # integer ids in numeric order, so that class id k is output k where the ids run from 0 (2 before 10)
    order = int if getattr(feature, "dtype", "").startswith(("int", "uint")) else None
    return ["O", *sorted(names["train"] - {"O"})] if "O" in names["train"] else sorted(names["train"], key=order)


def flatten(values):
    """The values of a column, with list values (token-level labels) unpacked."""
    for value in values:
        if isinstance(value, list):
            yield from value
        else:
            yield value


def label_strings(values, feature):
    """The distinct labels of a column's `values` (lists unpacked) as strings: ClassLabel ids by their names."""
    labels = set(flatten(values))
    return {feature.int2str(label) for label in labels} if isinstance(feature, ClassLabel) else set(map(str, labels))


def label_encoder(raw, column, names):
    """A function from one label (or tag) of `column` to its id in `names`: ClassLabel values are ids already where
    `names` are the ClassLabel's, other values (strings, integers that need not start at 0) are looked up by their
    string."""
    feature = raw["train"].features[column]
    feature = getattr(feature, "feature", feature)
    ids = {name: index for index, name in enumerate(names)}
    if isinstance(feature, ClassLabel):
        return int if list(feature.names) == list(names) else lambda value: ids[feature.int2str(value)]
    return lambda value: ids[str(value)]
