"""What every example shares: the model arguments, config construction with `--config_overrides`, a WordPiece
tokenizer trained from scratch with `tokenizers`, the local `evaluate` metrics and the examples' default
`TrainingArguments`."""

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import evaluate
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoConfig, BertConfig, PreTrainedTokenizerFast

import fourierformers

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


def parse_overrides(text):
    """'a=1,b=x,c=[1,2]' -> {'a': 1, 'b': 'x', 'c': [1, 2]}; values are Python literals, else strings."""
    if not text:
        return {}
    overrides = {}
    for item in re.split(r",(?![^\[]*\])", text):
        key, separator, value = item.partition("=")
        if not separator or not key.strip():
            raise ValueError(f"`--config_overrides` entries must look like field=value, got {item!r}.")
        try:
            overrides[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            overrides[key.strip()] = value.strip()
    return overrides


def build_config(model_args, defaults, baselines=None, **task_fields):
    """The model config: from `model_name_or_path` when fine-tuning, else a new config of `model_type` (a family,
    or one of `baselines`, BERT by default) built from the example's `defaults`; then the task's fields (labels,
    vocabulary, ...) and the user's overrides."""
    overrides = parse_overrides(model_args.config_overrides)
    if model_args.model_name_or_path is not None:
        return AutoConfig.from_pretrained(model_args.model_name_or_path, **task_fields, **overrides)
    config_classes = {**FAMILY_CONFIGS, **(BASELINE_CONFIGS if baselines is None else baselines)}
    if model_args.model_type not in config_classes:
        raise ValueError(f"`--model_type` must be one of {list(config_classes)}, got {model_args.model_type!r}.")
    config_class = config_classes[model_args.model_type]
    fields = {**defaults, **task_fields, **overrides}
    unknown = sorted(set(overrides) - set(config_class().to_dict()))
    if unknown:
        raise ValueError(f"Unknown config fields in `--config_overrides` for {model_args.model_type}: {unknown}.")
    return config_class(**fields)


def train_wordpiece_tokenizer(texts, vocab_size, model_max_length):
    """A BERT-style WordPiece tokenizer (lower-cased, `[CLS] text [SEP]`) trained on `texts`, wrapped as a
    transformers fast tokenizer. Special tokens get ids 0..4 in the order of `SPECIAL_TOKENS`."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.model = models.WordPiece(vocab=canonical_vocabulary(tokenizer.get_vocab()), unk_token="[UNK]")
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
    )


def canonical_vocabulary(vocab):
    """The trained vocabulary with reproducible ids: special tokens first, then the others sorted.

    The WordPiece trainer breaks ties between equally frequent merges in hash-map order, which changes from one
    process to the next, so the same texts give (almost always) the same tokens under permuted ids, and so
    different initial embeddings for one seed. WordPiece's greedy longest-match tokenisation depends only on the
    set of tokens, so renumbering changes no tokenisation; the set itself can still differ in a rare token at the
    vocabulary-size cutoff."""
    others = sorted(token for token in vocab if token not in SPECIAL_TOKENS)
    return {token: index for index, token in enumerate([*SPECIAL_TOKENS, *others])}


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


def load_metric(name):
    """One of the metric modules shipped in `examples/metrics/` (accuracy, regression, entity_f1)."""
    return evaluate.load(str(METRICS_DIR / name))


def set_training_defaults(parser, **defaults):
    """Defaults of the example's `TrainingArguments` so that `--output_dir` alone runs a sensible job; every
    `TrainingArguments` flag still overrides them."""
    parser.set_defaults(
        eval_strategy="epoch",
        save_strategy="no",
        logging_steps=50,
        report_to="none",
        ddp_find_unused_parameters=False,
        **defaults,
    )
