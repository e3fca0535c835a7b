"""Convert a transformers FNet checkpoint (google/fnet-base, google/fnet-large or a fine-tuned FNet) into an
`fnet_hybrid` checkpoint of the matching head, with FNet's tokenizer (`copy_tokenizer_files`).

    python scripts/convert_transformers_fnet.py INPUT_DIR OUTPUT_DIR [--head HEAD] [--attention-layers 10 11]

FNet is post-norm BERT with `Re(FFT_seq(FFT_hidden(x)))` in place of attention, which is exactly the `fourier`
mixer with `FNetHybridConfig`'s defaults, so the converted model reproduces FNet on unpadded inputs of length
`max_position_embeddings`. It differs on padded inputs by design: we mask padding out of the FFT and zero-pad to a
fixed FFT length, while FNet mixes the pad tokens in and transforms at the batch's length.

`--attention-layers` turns the mixer of the given layers into self-attention (the FNet paper's hybrid): those
layers keep FNet's LayerNorms and MLP, and their new attention weights are initialised by `_init_weights`.

Heads: `FNetModel` -> `FNetHybridModel`, `FNetForMaskedLM` and `FNetForPreTraining` -> `FNetHybridForMaskedLM`
(the next-sentence head of `FNetForPreTraining` has no counterpart and is dropped; its pooler is saved beside the
masked-LM weights, for the sequence heads fine-tuned from the folder),
`FNetForSequenceClassification`, `FNetForTokenClassification`, `FNetForQuestionAnswering` and
`FNetForMultipleChoice` -> the same heads of FNet-hybrid. The span and choice scorers convert without their biases,
which shift every token's (choice's) score alike and which our heads do not have: their scores are FNet's minus the
bias, their softmax (span and choice probabilities) and loss FNet's. `--head model` takes the backbone of any FNet
checkpoint; a task head keeps only the classifier of a checkpoint of the same task.
"""

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

from transformers import FNetConfig, FNetTokenizer

from fourierformers import (
    FNetHybridConfig,
    FNetHybridForMaskedLM,
    FNetHybridForMultipleChoice,
    FNetHybridForQuestionAnswering,
    FNetHybridForSequenceClassification,
    FNetHybridForTokenClassification,
    FNetHybridModel,
)
from fourierformers.atomic_directory import atomic_directory, check_output_dir
from fourierformers.checkpoint_loading import shard_names

sys.path.insert(0, str(Path(__file__).resolve().parent))

from original_checkpoint import read_checkpoint_file, run_command_line  # noqa: E402

HEADS = {
    "model": FNetHybridModel,
    "masked_lm": FNetHybridForMaskedLM,
    "sequence_classification": FNetHybridForSequenceClassification,
    "token_classification": FNetHybridForTokenClassification,
    "question_answering": FNetHybridForQuestionAnswering,
    "multiple_choice": FNetHybridForMultipleChoice,
}
FNET_ARCHITECTURES = {
    "FNetModel": "model",
    "FNetForMaskedLM": "masked_lm",
    "FNetForPreTraining": "masked_lm",
    "FNetForSequenceClassification": "sequence_classification",
    "FNetForTokenClassification": "token_classification",
    "FNetForQuestionAnswering": "question_answering",
    "FNetForMultipleChoice": "multiple_choice",
}
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "spiece.model",
    "vocab.txt",
)
# (FNet key pattern, our key) after removing the `fnet.` prefix; `None` drops the key.
KEY_RULES = [
    (r"embeddings\.(word_embeddings|position_embeddings|token_type_embeddings|projection)\.(weight|bias)",
     r"embeddings.\1.\2"),
    (r"embeddings\.LayerNorm\.(weight|bias)", r"embeddings.layer_norm.\1"),
    (r"encoder\.layer\.(\d+)\.fourier\.output\.LayerNorm\.(weight|bias)", r"layers.\1.mixer_norm.\2"),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.(weight|bias)", r"layers.\1.mlp.fc1.\2"),
    (r"encoder\.layer\.(\d+)\.output\.dense\.(weight|bias)", r"layers.\1.mlp.fc2.\2"),
    (r"encoder\.layer\.(\d+)\.output\.LayerNorm\.(weight|bias)", r"layers.\1.mlp_norm.\2"),
    (r"pooler\.dense\.(weight|bias)", r"pooler.dense.\1"),
    (r"classifier\.(weight|bias)", r"classifier.\1"),
    (r"cls\.predictions\.transform\.dense\.(weight|bias)", r"lm_head.dense.\1"),
    (r"cls\.predictions\.transform\.LayerNorm\.(weight|bias)", r"lm_head.layer_norm.\1"),
    (r"cls\.predictions\.(?:decoder\.)?bias", "lm_head.decoder.bias"),
    (r"cls\.predictions\.decoder\.weight", "lm_head.decoder.weight"),
    (r"cls\.seq_relationship\.(weight|bias)", None),
    (r"qa_outputs\.weight", "qa_outputs.weight"),
    (r"qa_outputs\.bias", None),  # a shift of every token's span score (see the module docstring)
    (r"embeddings\.(position_ids|token_type_ids)", None),
    # DFT matrices of `use_tpu_fourier_optimizations=True`: the same transform, recomputed by our FFT.
    (r"encoder\.layer\.\d+\.fourier\.self\.dft_mat_(hidden|seq)", None),
]
BACKBONE_KEYS = ("embeddings.", "layers.", "pooler.")


def read_state_dict(input_dir):
    """The FNet weights of a checkpoint folder: model.safetensors (sharded or not) or pytorch_model.bin (sharded or
    not), in transformers' order: a single file before an index, which a sharded save followed by an unsharded one
    leaves behind."""
    input_dir = Path(input_dir)
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (input_dir / name).exists():
            return read_checkpoint_file(input_dir / name)
        index = input_dir / f"{name}.index.json"
        if index.exists():
            shards = shard_names(index)
            return {key: value for shard in shards for key, value in read_checkpoint_file(input_dir / shard).items()}
    raise ValueError(f"No FNet weights in {input_dir}: expected model.safetensors or pytorch_model.bin.")


def read_fnet_config(input_dir):
    """The `FNetConfig` of the checkpoint folder `input_dir`, after checking that it is one."""
    if not input_dir.exists():
        raise FileNotFoundError(f"FNet checkpoint folder {input_dir} does not exist.")
    if not input_dir.is_dir() or not (input_dir / "config.json").is_file():
        raise ValueError(
            f"{input_dir} is not a transformers checkpoint folder: pass the folder holding config.json and the "
            "weights (e.g. a download of google/fnet-base)."
        )
    try:
        model_type = json.loads((input_dir / "config.json").read_text()).get("model_type")
    except ValueError as error:
        raise ValueError(f"{input_dir / 'config.json'} is not valid JSON ({error}).") from error
    if model_type != FNetConfig.model_type:
        held = "a config.json without a model_type" if model_type is None else f"a {model_type!r} checkpoint"
        raise ValueError(
            f"{input_dir} holds {held}; this converter reads transformers FNet checkpoints "
            f"(model_type 'fnet', architectures {sorted(FNET_ARCHITECTURES)})."
        )
    return FNetConfig.from_pretrained(input_dir)


def checkpoint_filter_fn(state_dict, model, same_head=True):
    """Rename FNet keys into the keys of `model` (an FNet-hybrid model of the matching head); drops the
    next-sentence head, buffers, the weights of heads other than `model`'s (the pooler of heads without one), and
    the `classifier` unless the checkpoint is of `model`'s head (`same_head`): a sequence classifier's weights in a
    token classifier, or a multiple-choice scorer's, would predict nonsense. Raises ValueError on unknown keys."""
    prefix = model.base_model_prefix + "." if model.base_model is not model else ""
    expected = set(model.state_dict())
    converted = {}
    for fnet_key, value in state_dict.items():
        key = fnet_key.removeprefix("fnet.")
        if key.startswith("classifier.") and not same_head:
            continue
        for pattern, replacement in KEY_RULES:
            if re.fullmatch(pattern, key):
                key = None if replacement is None else re.sub(pattern, replacement, key)
                break
        else:
            raise ValueError(f"Unknown FNet key {fnet_key!r}; known layouts: {sorted(FNET_ARCHITECTURES)}.")
        if key is None:
            continue
        if isinstance(model, FNetHybridForMultipleChoice) and key.startswith("classifier."):
            if key == "classifier.bias":  # a shift of every choice's score (see the module docstring)
                continue
            key = "choice_scorer.weight"
        key = prefix + key if key.startswith(BACKBONE_KEYS) else key
        if key in expected:
            converted[key] = value
    return converted


def pooler_beside_the_head(state_dict, model):
    """FNet's pooler (dense + tanh over the first token, trained on next-sentence prediction in google/fnet-base)
    under our key names where `model` is a masked-LM model, which has none, to be saved beside its weights: a
    sequence head fine-tuned from the converted folder then starts from it, as FNet's own sequence classifier does
    from the FNet checkpoint. Empty for other heads or a checkpoint without a pooler."""
    if not isinstance(model, FNetHybridForMaskedLM):
        return {}
    pooler = {}
    for key, value in state_dict.items():
        match = re.fullmatch(r"(?:fnet\.)?pooler\.dense\.(weight|bias)", key)
        if match:
            pooler[f"{model.base_model_prefix}.pooler.dense.{match[1]}"] = value
    return pooler


def fnet_hybrid_config(fnet_config, attention_layers=(), num_attention_heads=None):
    """An FNetHybridConfig equal to `fnet_config` (a transformers FNetConfig), with `attention` mixers in the
    layers listed in `attention_layers` (negative indices count from the last layer) and `fourier` elsewhere."""
    num_layers = fnet_config.num_hidden_layers
    for index in attention_layers:
        if not -num_layers <= index < num_layers:
            raise ValueError(
                f"Attention layer index {index} is out of range: the model has layers 0..{num_layers - 1} "
                f"(or -{num_layers}..-1)."
            )
    attention_layers = {index % num_layers for index in attention_layers}
    if num_attention_heads is None:
        num_attention_heads = max(1, fnet_config.hidden_size // 64)
    return FNetHybridConfig(
        vocab_size=fnet_config.vocab_size,
        hidden_size=fnet_config.hidden_size,
        num_hidden_layers=num_layers,
        intermediate_size=fnet_config.intermediate_size,
        hidden_act=fnet_config.hidden_act,
        hidden_dropout_prob=fnet_config.hidden_dropout_prob,
        attention_probs_dropout_prob=fnet_config.hidden_dropout_prob,
        max_position_embeddings=fnet_config.max_position_embeddings,
        type_vocab_size=fnet_config.type_vocab_size,
        initializer_range=fnet_config.initializer_range,
        layer_norm_eps=fnet_config.layer_norm_eps,
        mixer_layout=["attention" if index in attention_layers else "fourier" for index in range(num_layers)],
        num_attention_heads=num_attention_heads,
        pad_token_id=fnet_config.pad_token_id,
        bos_token_id=fnet_config.bos_token_id,
        eos_token_id=fnet_config.eos_token_id,
        tie_word_embeddings=fnet_config.tie_word_embeddings,
        id2label=fnet_config.id2label,
        label2id=fnet_config.label2id,
        problem_type=fnet_config.problem_type,
    )


def head_of(fnet_config):
    """Our head name for the first of `fnet_config.architectures`; None where it has no counterpart here."""
    architectures = fnet_config.architectures or []
    return FNET_ARCHITECTURES.get(architectures[0]) if architectures else None


def convert_fnet_checkpoint(
    input_dir, output_dir=None, head=None, attention_layers=(), num_attention_heads=None, overwrite=False
):
    """Load the FNet checkpoint in `input_dir` as an FNet-hybrid model of the matching head (or of `head`, one of
    `HEADS`) and, if `output_dir` is given, save it there with the tokenizer files, all at once (an error leaves
    `output_dir` as it was; a non-empty `output_dir` is replaced only where it holds an
    earlier run's output and nothing else, `atomic_directory.holds_earlier_output`, or with `overwrite`).
    Returns the model in eval mode."""
    input_dir = Path(input_dir)
    if output_dir is not None:
        check_output_dir(output_dir, overwrite, overwrite_option="--overwrite", inputs=[input_dir])
    fnet_config = read_fnet_config(input_dir)
    checkpoint_head = head_of(fnet_config)
    if head is None and checkpoint_head is None:
        raise ValueError(
            f"Cannot tell the head from architectures={fnet_config.architectures}; pass `head`, one of "
            f"{sorted(HEADS)} (`model` converts the backbone of any FNet checkpoint)."
        )
    head = head or checkpoint_head
    if head not in HEADS:
        raise ValueError(f"Unknown head {head!r}; allowed: {sorted(HEADS)}.")
    if num_attention_heads is not None and not attention_layers:
        raise ValueError(
            f"num_attention_heads={num_attention_heads} without attention layers would be saved and unused; pass "
            "the layers that become attention (`--attention-layers`), or leave the heads out."
        )
    config = fnet_hybrid_config(fnet_config, attention_layers, num_attention_heads)
    model = HEADS[head](config)  # every weight initialised by _init_weights, the new attention layers included
    state_dict = read_state_dict(input_dir)
    converted = checkpoint_filter_fn(state_dict, model, same_head=head == checkpoint_head)
    tied = set(model._tied_weights_keys or {}) if config.tie_word_embeddings else set()
    new_attention = [
        f"layers.{index}.mixer." for index, mixer in enumerate(config.mixer_layout) if mixer == "attention"
    ]
    missing = set(model.state_dict()) - set(converted) - tied
    missing = {key for key in missing if not any(layer in key for layer in new_attention)}
    if missing:
        raise ValueError(
            f"The FNet checkpoint lacks weights for {sorted(missing)} (head {head!r}): a converter keeps weights and "
            "makes none. Convert with the checkpoint's own head (its `architectures`) or `--head model`, then "
            "fine-tune the new head, e.g. with examples/run_text_classification.py --model_name_or_path OUTPUT_DIR, "
            "which initialises it."
        )
    model.load_state_dict(converted, strict=False)
    model.tie_weights()
    model.eval()
    if output_dir is not None:
        with atomic_directory(output_dir, overwrite, overwrite_option="--overwrite") as work_dir:
            pooler = pooler_beside_the_head(state_dict, model)
            model.save_pretrained(work_dir, state_dict={**model.state_dict(), **pooler})
            copy_tokenizer_files(input_dir, work_dir)
    return model


def copy_tokenizer_files(input_dir, output_dir):
    """Copy FNet's tokenizer files unchanged, except two entries of its tokenizer config: `model_input_names` gains
    "attention_mask", which `FNetTokenizer` leaves out (FNet mixes pad tokens in) and without which no tokenizer,
    pipeline or `DataCollatorWithPadding` passes the mask that keeps padding out of FNet-hybrid's outputs; and
    `tokenizer_class`, where the checkpoint has none, names FNet's, which `AutoTokenizer` found by the model type
    `fnet` that the converted config no longer has."""
    copied = [name for name in TOKENIZER_FILES if (input_dir / name).exists()]
    for name in copied:
        shutil.copyfile(input_dir / name, output_dir / name)
    if not copied:
        return
    path = output_dir / "tokenizer_config.json"
    tokenizer_config = json.loads(path.read_text()) if path.exists() else {}
    tokenizer_config.setdefault("tokenizer_class", FNetTokenizer.__name__)
    input_names = list(tokenizer_config.get("model_input_names") or FNetTokenizer.model_input_names)
    if "attention_mask" not in input_names:
        input_names.append("attention_mask")
    tokenizer_config["model_input_names"] = input_names
    path.write_text(json.dumps(tokenizer_config, indent=2, ensure_ascii=False) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input_dir", help="folder of a transformers FNet checkpoint (config.json + weights)")
    parser.add_argument("output_dir", help="where to write the fnet_hybrid checkpoint")
    parser.add_argument("--head", choices=sorted(HEADS), help="target head; default: from config.architectures")
    parser.add_argument(
        "--attention-layers", type=int, nargs="*", default=[], metavar="INDEX",
        help="layers (0-based; -1 is the last) whose Fourier mixer becomes freshly initialised self-attention",
    )
    parser.add_argument(
        "--num-attention-heads", type=int, help="heads of the attention layers; default hidden_size // 64, at least 1"
    )
    parser.add_argument("--overwrite", action="store_true",
                        help="replace output_dir even if it is not empty and holds no saved model")
    args = parser.parse_args(argv)
    model = convert_fnet_checkpoint(
        args.input_dir, args.output_dir, args.head, args.attention_layers, args.num_attention_heads, args.overwrite
    )
    print(f"Saved {type(model).__name__} with layout {model.config.mixer_layout} to {args.output_dir}")


if __name__ == "__main__":
    run_command_line(main)
