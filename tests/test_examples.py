"""End-to-end runs of the example scripts on small slices of their default data with tiny configs: training,
evaluation with the local metrics, saving, and the pipeline each script runs at the end; evaluation and
predictions of a saved model without training; fine-tuning, resuming and output-folder checks. Plus a 2-process
`torchrun` run (the README's command, without `--use_cpu` unless torch sees a single accelerator device) whose
losses must equal the single-process run's (the `num_items_in_batch` handling)."""

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tokenizers
import torch
from conftest import FAMILIES
from datasets import Dataset
from PIL import Image
from safetensors.torch import load_file
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    CLIPImageProcessor,
    DataCollatorForLanguageModeling,
    PreTrainedTokenizerFast,
    Trainer,
    TrainingArguments,
    ViTConfig,
    ViTForImageClassification,
    ViTImageProcessor,
    pipeline,
)

from fourierformers import (
    GFNetConfig,
    GFNetForImageClassification,
    GFNetForMaskedLM,
    GFNetForSequenceClassification,
    GFNetForTokenClassification,
    GFNetModel,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

import common  # noqa: E402
import data  # noqa: E402
import run_image_classification  # noqa: E402
import run_mlm  # noqa: E402
import run_text_classification  # noqa: E402
import run_token_classification  # noqa: E402
TINY_MODEL = "hidden_size=32,intermediate_size=64,num_hidden_layers=2,num_attention_heads=4,hidden_dropout_prob=0.0"
# The examples' own device defaults (no `--use_cpu`): what the README's commands run.
SMALL_RUN = ["--max_train_samples", "64", "--max_eval_samples", "32", "--num_train_epochs", "1"]
TEXT_RUN = [*SMALL_RUN, "--vocab_size", "400", "--max_seq_length", "32"]
PIPELINE_LINE = re.compile(r"^pipeline: (.*) \| (.*)$")

pytestmark = pytest.mark.slow


def run_example(script, output_dir, *args, launcher=()):
    """Run `examples/<script>` in a subprocess; return its `pipeline:` lines as (prediction, input) pairs, its
    saved metrics and its log."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [*launcher, str(EXAMPLES / script), "--output_dir", str(output_dir), *args]
    if not launcher:
        command.insert(0, sys.executable)
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=EXAMPLES.parent)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    lines = result.stdout.splitlines()
    pipeline_lines = [PIPELINE_LINE.match(line).groups() for line in lines if line.startswith("pipeline:")]
    metrics = json.loads((Path(output_dir) / "all_results.json").read_text())
    return pipeline_lines, metrics, log


def saved_config(output_dir):
    return json.loads((Path(output_dir) / "config.json").read_text())


def saved_vocabulary(output_dir):
    return json.loads((Path(output_dir) / "tokenizer.json").read_text())["model"]["vocab"]


@pytest.mark.parametrize("model_type", [*FAMILIES, "bert"])
def test_text_classification(tmp_path, model_type, monkeypatch):
    sentences = ["A wonderful film.", "Dull and far too long."]
    lines, metrics, _ = run_example(
        "run_text_classification.py", tmp_path, "--model_type", model_type, "--config_overrides", TINY_MODEL,
        *TEXT_RUN, "--pipeline_inputs", *sentences,
    )
    assert saved_config(tmp_path)["model_type"] == model_type
    assert (tmp_path / "tokenizer.json").is_file()
    # the model is built with the tokenizer's padding id: the [PAD] embedding (padding_idx) stays zero, the [UNK]
    # one is trained (built with another id, [UNK] was the frozen zero row; Trainer then fixed the saved config only)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    embeddings = AutoModelForSequenceClassification.from_pretrained(tmp_path).get_input_embeddings().weight
    assert not embeddings[tokenizer.pad_token_id].any() and embeddings[tokenizer.unk_token_id].any()
    monkeypatch.syspath_prepend(str(EXAMPLES))  # the saved arguments are the examples' TrainingArguments subclass
    assert torch.load(tmp_path / "training_args.bin", weights_only=False).output_dir == str(tmp_path)
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0
    assert [sentence for _, sentence in lines] == sentences
    for prediction, _ in lines:
        label, score = prediction.split()
        assert label in ("negative", "positive")
        assert 0.5 <= float(score) <= 1.0  # the top class of two


def test_text_regression(tmp_path):
    sentences = ["A wonderful film.", "Dull and far too long.", "It is a film."]
    lines, metrics, _ = run_example(
        "run_text_classification.py", tmp_path, "--task", "regression", "--config_overrides", TINY_MODEL,
        *TEXT_RUN, "--pipeline_inputs", *sentences,
    )
    config = saved_config(tmp_path)
    assert config["problem_type"] == "regression" and config["id2label"] == {"0": "label"}
    assert metrics["eval_mse"] >= 0 and -1 <= metrics["eval_pearson"] <= 1
    assert [sentence for _, sentence in lines] == sentences
    assert {prediction.split()[0] for prediction, _ in lines} == {"label"}
    scores = [float(prediction.split()[1]) for prediction, _ in lines]
    assert not all(score == 1.0 for score in scores)  # raw regression outputs, not a softmax over one label
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    with torch.no_grad():  # the pipeline prints each sentence's raw output (no sigmoid, no softmax)
        outputs = [model(**tokenizer(sentence, return_tensors="pt")).logits.item() for sentence in sentences]
    assert scores == pytest.approx(outputs, abs=2e-3)
    # evaluated on data whose score column has another name: the checkpoint keeps its output's name
    rows = ["sentence,rating", *(f"A film of rank {index}.,{index / 5}" for index in range(6))]
    (tmp_path / "ratings.csv").write_text("\n".join(rows) + "\n")
    _, metrics, _ = run_example(
        "run_text_classification.py", tmp_path / "evaluated", "--model_name_or_path", str(tmp_path), "--task",
        "regression", "--do_eval", "--train_file", str(tmp_path / "ratings.csv"), "--validation_file",
        str(tmp_path / "ratings.csv"), "--label_column_name", "rating", "--pipeline_inputs", "A film.",
    )
    # the ratings are scored as the numbers they are (0.2 is not 0): the MSE of the model's outputs on them
    texts, ratings = [f"A film of rank {index}." for index in range(6)], torch.tensor([index / 5 for index in range(6)])
    with torch.no_grad():  # one evaluation batch, padded as the data collator pads it
        predicted = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.squeeze(-1)
    assert metrics["eval_mse"] == pytest.approx(((predicted - ratings) ** 2).mean().item(), rel=1e-4)
    # one evaluation example has no correlation: the run failed in `log_metrics` on its None, losing its results
    (tmp_path / "one_rating.csv").write_text("sentence,rating\nA film.,0.5\n")
    _, metrics, _ = run_example(
        "run_text_classification.py", tmp_path / "evaluated_on_one", "--model_name_or_path", str(tmp_path), "--task",
        "regression", "--do_eval", "--train_file", str(tmp_path / "ratings.csv"), "--validation_file",
        str(tmp_path / "one_rating.csv"), "--label_column_name", "rating", "--pipeline_inputs", "A film.",
    )
    assert "eval_pearson" not in metrics and metrics["eval_mse"] >= 0
    # without `--task regression`: its one output's name was taken for the only class the data may have
    with pytest.raises(ValueError, match=r"is a regression model \(problem_type='regression'\); evaluate it with "
                                         r"`--task regression`"):
        run_text_classification.main([
            "--output_dir", str(tmp_path / "as_classes"), "--model_name_or_path", str(tmp_path), "--do_eval",
            "--train_file", str(tmp_path / "ratings.csv"), "--validation_file", str(tmp_path / "ratings.csv"),
            "--label_column_name", "rating",
        ])
    # the regression checkpoint fine-tuned for the classes: the classification loss replaces the regression one
    _, metrics, _ = run_example("run_text_classification.py", tmp_path / "classes", "--model_name_or_path", tmp_path,
                                *TEXT_RUN[:-4])
    assert saved_config(tmp_path / "classes")["problem_type"] == "single_label_classification"
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0


def test_text_classification_user_csv(tmp_path):
    rows = ["text,sentiment"] + [f"good film {i},pos" if i % 2 else f"bad film {i},neg" for i in range(40)]
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
    output_dir = tmp_path / "model"
    lines, metrics, _ = run_example(
        "run_text_classification.py", output_dir, "--train_file", str(tmp_path / "train.csv"),
        "--text_column_name", "text", "--label_column_name", "sentiment", "--config_overrides", TINY_MODEL,
        *TEXT_RUN, "--num_train_epochs", "3", "--pipeline_inputs", "good movie",
    )
    assert saved_config(output_dir)["id2label"] == {"0": "neg", "1": "pos"}
    assert lines[0][0].split()[0] in ("neg", "pos")
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0


def test_token_classification(tmp_path):
    sentences = ["Going to London with Taylor tonight", "Watching the Yankees on ESPN"]
    lines, metrics, _ = run_example(
        "run_token_classification.py", tmp_path, "--config_overrides", TINY_MODEL, *TEXT_RUN,
        "--pipeline_inputs", *sentences,
    )
    tag_names = set(saved_config(tmp_path)["id2label"].values())
    assert "O" in tag_names and "B-person" in tag_names and len(tag_names) == 21
    assert {"eval_f1", "eval_precision", "eval_recall", "eval_accuracy"} <= set(metrics)
    assert [sentence for _, sentence in lines] == sentences
    for prediction, _ in lines:
        entities = re.fullmatch(r"\[(.*)\]", prediction).group(1)
        for entity in filter(None, entities.split(", ")):
            assert "B-" + entity.rsplit("=", 1)[1] in tag_names  # aggregated groups are entity types
    # evaluated on data with 2 of its 21 tags: scored with the checkpoint's tag ids
    rows = [json.dumps({"tokens": ["Taylor", "sings", "tonight"], "ner_tags": ["B-person", "O", "O"]})] * 4
    (tmp_path.parent / "two_tags.jsonl").write_text("\n".join(rows) + "\n")
    data = ["--train_file", str(tmp_path.parent / "two_tags.jsonl"), "--validation_file",
            str(tmp_path.parent / "two_tags.jsonl")]
    _, evaluated, _ = run_example("run_token_classification.py", tmp_path.parent / "evaluated", "--model_name_or_path",
                                  str(tmp_path), "--do_eval", *data, "--pipeline_inputs", sentences[0])
    assert 0.0 <= evaluated["eval_accuracy"] <= 1.0


@pytest.mark.parametrize("tags,spans", [
    (["B-PER", "I-PER", "O", "B-LOC"], {("PER", 0, 2), ("LOC", 3, 4)}),
    (["O", "I-PER", "I-PER", "B-PER"], {("PER", 1, 3), ("PER", 3, 4)}),  # I- without B- starts an entity (conlleval)
    (["B-PER", "I-LOC", "O"], {("PER", 0, 1), ("LOC", 1, 2)}),
    (["B-PER", "E-PER", "O", "S-LOC"], {("PER", 0, 2), ("LOC", 3, 4)}),  # IOBES: S- tags were dropped
    (["B-PER", "I-PER", "E-PER", "I-PER"], {("PER", 0, 3), ("PER", 3, 4)}),  # E- ends its entity
    (["E-PER", "E-PER", "S-PER", "I-PER"], {("PER", 0, 1), ("PER", 1, 2), ("PER", 2, 3), ("PER", 3, 4)}),
    (["U-ORG", "B-LOC", "L-LOC", "O"], {("ORG", 0, 1), ("LOC", 1, 3)}),  # BILOU
])
def test_entity_f1_reads_bio_iobes_and_bilou_entities(tags, spans):
    metric = common.load_metric("entity_f1")
    module = sys.modules[type(metric).__module__]
    assert module.entity_spans(tags) == spans
    assert metric.compute(predictions=[tags], references=[tags])["f1"] == 1.0


def test_entity_f1_scores_iobes_boundaries():
    """An E- tag ended the entity one token early: a two-token prediction matched a one-token reference."""
    scores = common.load_metric("entity_f1").compute(
        predictions=[["B-PER", "E-PER", "O"], ["S-LOC", "O", "O"]],
        references=[["B-PER", "O", "O"], ["S-LOC", "O", "O"]],
    )
    assert (scores["precision"], scores["recall"], scores["f1"]) == (0.5, 0.5, 0.5)


def test_entity_f1_precision_recall_and_token_accuracy():
    """Precision counts the predicted entities, recall the reference ones, and token accuracy the tags equal to
    their reference: 3 entities predicted, 1 in the references, 1 of them right; 4 of 6 tags right."""
    scores = common.load_metric("entity_f1").compute(
        predictions=[["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]],
        references=[["B-PER", "I-PER", "O", "O"], ["O", "O"]],
    )
    assert scores == pytest.approx({"precision": 1 / 3, "recall": 1.0, "f1": 0.5, "accuracy": 4 / 6})


def test_text_model_and_tokenizer_share_their_length(tmp_path):
    """The saved tokenizer truncates where the model ends: a model of 24 positions from a tokenizer trained at the
    default 64 saved `model_max_length` 64, and the closing pipeline failed on a long sentence after training."""
    long_sentence = " ".join(["a wonderful film"] * 20)
    lines, _, _ = run_example(
        "run_text_classification.py", tmp_path, "--config_overrides", f"{TINY_MODEL},max_position_embeddings=24",
        *SMALL_RUN, "--vocab_size", "400", "--pipeline_inputs", long_sentence,
    )
    assert saved_config(tmp_path)["max_position_embeddings"] == 24
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["model_max_length"] == 24
    assert [sentence for _, sentence in lines] == [long_sentence]


def test_token_classification_of_other_tags_long_texts_and_blank_words(tmp_path):
    """POS-style tags (not BIO) are scored by accuracy alone, not with an entity F1 of 0; the pipeline tags a text
    longer than the model in windows; a blank word, which would shift the tags, is refused before training."""
    words = ["the", "film", "was", "good", "and", "long"]
    tags = ["DT", "NN", "VBD", "JJ", "CC", "JJ"]
    rows = [json.dumps({"tokens": words[: 3 + i % 4], "tags": tags[: 3 + i % 4]}) for i in range(40)]
    (tmp_path / "pos.jsonl").write_text("\n".join(rows) + "\n")
    long_text = " ".join(words * 8)
    lines, metrics, _ = run_example(
        "run_token_classification.py", tmp_path / "pos", "--train_file", str(tmp_path / "pos.jsonl"),
        "--tags_column_name", "tags", "--config_overrides", TINY_MODEL, *TEXT_RUN, "--max_seq_length", "16",
        "--pipeline_inputs", long_text,
    )
    assert "eval_accuracy" in metrics and "eval_f1" not in metrics
    tagged = re.fullmatch(r"\[(.*)\]", lines[0][0]).group(1).split(", ")
    assert len(" ".join(entity.rsplit("=", 1)[0] for entity in tagged).split()) == len(long_text.split())
    # a tokenizer saved without a length limit is fitted to the model, so that the windows still apply
    config_file = tmp_path / "pos" / "tokenizer_config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "model_max_length": 10**30}))
    entities = run_token_classification.word_tagger(str(tmp_path / "pos"))(long_text)
    assert len(" ".join(entity["word"] for entity in entities).split()) == len(long_text.split())
    # words of several subwords: windows start and end between words, so no window tags a fragment ("##g")
    compound = " ".join(["filmgood", "wasthe", "longandfilm"] * 12)
    entities = run_token_classification.word_tagger(str(tmp_path / "pos"))(compound)
    assert " ".join(entity["word"] for entity in entities).split() == compound.split()
    # POS tags name words, not spans: neighbouring words of one tag stay apart, as do tags with hyphens ("-NONE-")
    model = AutoModelForTokenClassification.from_pretrained(tmp_path / "pos")
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(10.0 * (torch.arange(model.config.num_labels) == model.config.label2id["NN"]))
    model.config.id2label = {**model.config.id2label, model.config.label2id["NN"]: "-NONE-"}
    model.config.label2id = {label: index for index, label in model.config.id2label.items()}
    model.save_pretrained(tmp_path / "all-nouns")
    tagger = run_token_classification.word_tagger(str(tmp_path / "all-nouns"), tokenizer=str(tmp_path / "pos"))
    for text in ("the good film", " ".join(words * 8)):
        assert [(e["word"], e["entity_group"]) for e in tagger(text)] == [(word, "-NONE-") for word in text.split()]
    # subword entries ("simple") are transformers' own
    plain = pipeline("token-classification", model=str(tmp_path / "all-nouns"), tokenizer=tagger.tokenizer,
                     aggregation_strategy="simple")
    assert tagger("the good film", aggregation_strategy="simple") == plain("the good film")
    blank = [json.dumps({"tokens": ["the", " ", "film"], "tags": ["DT", "NN", "NN"]})] * 4
    (tmp_path / "blank.jsonl").write_text("\n".join(blank) + "\n")
    with pytest.raises(ValueError, match=r"The row of the train data with words \['the', ' ', 'film'\] has a word "
                                         r"\(`--tokens_column_name` 'tokens'\) that is not a non-blank string at "):
        run_token_classification.main([
            "--output_dir", str(tmp_path / "blank"), "--train_file", str(tmp_path / "blank.jsonl"),
            "--tags_column_name", "tags",
        ])
    # a word the tokenizer's normaliser removes whole (a soft hyphen) would shift the tags just as well
    hyphen = [json.dumps({"tokens": ["the", "\u00ad", "film"], "tags": ["DT", "NN", "NN"]})] * 4
    (tmp_path / "hyphen.jsonl").write_text("\n".join(hyphen) + "\n")
    with pytest.raises(ValueError, match=r"The tokenizer makes no token of 1 word\(s\) of the data, e.g. \['\\xad'\]"):
        run_token_classification.main([
            "--output_dir", str(tmp_path / "hyphen"), "--train_file", str(tmp_path / "hyphen.jsonl"),
            "--tags_column_name", "tags", "--tokenizer_name", str(tmp_path / "pos"),
        ])


@pytest.mark.parametrize("word_starts,num_tokens,capacity,windows", [
    ([0, 2, 3, 6, 8, 9], 10, 4, [(0, 3), (2, 6), (6, 10)]),
    ([0, 1, 2, 3, 4, 5, 6, 7], 8, 4, [(0, 4), (3, 7), (6, 8)]),
    ([0, 7], 9, 4, [(0, 4), (4, 7), (7, 9)]),  # a word longer than a window is cut, and only it
    ([0, 3], 5, 8, [(0, 5)]),
])
def test_word_windows_start_and_end_between_words(word_starts, num_tokens, capacity, windows):
    assert run_token_classification.word_windows(word_starts, num_tokens, capacity) == windows
    cores = run_token_classification.window_cores(windows, word_starts)
    assert [start for start, _ in cores[1:]] == [end for _, end in cores[:-1]]  # each token in one core
    assert cores[0][0] == 0 and cores[-1][1] == num_tokens
    for (start, end), (core_start, core_end) in zip(windows, cores):
        assert start <= core_start < core_end <= end


def test_window_cores_meet_in_the_middle_of_the_overlap():
    """Consecutive windows hand their words over at the word start nearest the middle of their overlap (not at the
    end of the first window), so that each word is tagged with context on both sides."""
    word_starts = list(range(12))
    windows = run_token_classification.word_windows(word_starts, 12, 8)
    assert windows == [(0, 8), (6, 12)]
    assert run_token_classification.window_cores(windows, word_starts) == [(0, 7), (7, 12)]


def test_word_tagger_windows_slice_the_texts_tokens_and_batch_with_short_texts(tmp_path):
    """With a byte-level BPE tokenizer a word tokenizes otherwise without the space before it: windows are slices
    of the whole text's tokens (a window tokenized again overran the model), and texts short and long batch."""
    corpus = ["the film was wonderful and extraordinary in london"] * 50
    backend = tokenizers.Tokenizer(tokenizers.models.BPE())
    backend.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = tokenizers.decoders.ByteLevel()
    backend.train_from_iterator(corpus, tokenizers.trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>", "</s>", "<pad>", "<unk>"],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet()))
    backend.post_processor = tokenizers.processors.RobertaProcessing(("</s>", 1), ("<s>", 0), add_prefix_space=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, cls_token="<s>", sep_token="</s>",
                                        pad_token="<pad>", unk_token="<unk>")
    assert tokenizer.tokenize("extraordinary") != tokenizer.tokenize("in extraordinary")[1:]
    tokenizer.save_pretrained(tmp_path)
    config = GFNetConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, intermediate_size=16,
                         max_position_embeddings=12, pad_token_id=2, num_labels=3,
                         id2label={0: "O", 1: "B-loc", 2: "I-loc"}, label2id={"O": 0, "B-loc": 1, "I-loc": 2})
    GFNetForTokenClassification(config).save_pretrained(tmp_path)
    tagger = run_token_classification.word_tagger(str(tmp_path))
    long_text = " ".join(corpus[:4])
    texts = ["the film", long_text, "", long_text + " london"]
    alone = [tagger(text, ignore_labels=[]) for text in texts]
    assert " ".join(entity["word"].strip() for entity in alone[1]).split() == long_text.split()
    batched = tagger(texts, batch_size=4, ignore_labels=[])
    for single, in_batch in zip(alone, batched, strict=True):
        assert [(e["entity_group"], e["start"], e["end"]) for e in in_batch] == [
            (e["entity_group"], e["start"], e["end"]) for e in single]
    # a text that fits the model is one window: tagged as transformers' pipeline tags it
    plain = pipeline("token-classification", model=str(tmp_path), tokenizer=tagger.tokenizer,
                     aggregation_strategy="first")
    short = "the film was wonderful in london"
    assert [(e["entity_group"], e["start"], e["end"]) for e in tagger(short, ignore_labels=[])] == [
        (e["entity_group"], e["start"], e["end"]) for e in plain(short, ignore_labels=[])]


def test_token_classification_tags_whole_words(tmp_path):
    """The model tags a word on its first subword: its pipeline must report whole words, even when every subword
    predicts the start of an entity (grouping subwords by their own predictions reported fragments such as 'yan')."""
    run_example("run_token_classification.py", tmp_path, "--config_overrides", TINY_MODEL, *TEXT_RUN)
    model = AutoModelForTokenClassification.from_pretrained(tmp_path)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(10.0 * (torch.arange(model.config.num_labels) == model.config.label2id["B-person"]))
    model.save_pretrained(tmp_path / "every-token-a-person")
    tagger = run_token_classification.word_tagger(model=str(tmp_path / "every-token-a-person"), tokenizer=str(tmp_path))
    sentence = "Watching the Yankees on ESPN with Taylor"
    assert len(tagger.tokenizer.tokenize(sentence)) > len(sentence.split())  # some words have several subwords
    assert [entity["word"] for entity in tagger(sentence)] == sentence.lower().split()


def test_token_predictions_tag_each_word_by_its_first_subword(tmp_path):
    """A word's tag is read at its first subword, the other subwords being ignored (-100) in the labels: the
    predictions.txt of a saved model has one tag per word, the model's prediction at the word's first subword."""
    words = ["unbelievably", "london", "performances", "tonight", "extraordinary"]
    tags = ["O", "B-loc", "O", "B-time", "I-time"]
    tokenizer = common.train_wordpiece_tokenizer([" ".join(words)] * 4, 60, 64)
    pieces = [tokenizer.tokenize(word) for word in words]
    assert all(len(word_pieces) > 2 for word_pieces in pieces)  # words of several subwords
    torch.manual_seed(0)
    config = GFNetConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, intermediate_size=32,
                         max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
                         **common.label_fields(["O", "B-loc", "I-loc", "B-time", "I-time"]))
    model = GFNetForTokenClassification(config).eval()
    with torch.no_grad():
        model.classifier.weight.normal_(std=1.0)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    encoded = tokenizer(words, is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        predicted = model(**encoded).logits[0].argmax(-1).tolist()
    word_ids = encoded.word_ids(0)
    first = [position for position, word in enumerate(word_ids) if word is not None and word != word_ids[position - 1]]
    last = [position for position, word in enumerate(word_ids) if word is not None and word != word_ids[position + 1]]
    expected = [config.id2label[predicted[position]] for position in first]
    assert expected != [config.id2label[predicted[position]] for position in last]  # the positions tell apart
    (tmp_path / "data.jsonl").write_text(json.dumps({"tokens": words, "ner_tags": tags}) + "\n")
    run_example("run_token_classification.py", tmp_path / "predicted", "--model_name_or_path", str(tmp_path / "model"),
                "--do_predict", "--train_file", str(tmp_path / "data.jsonl"), "--validation_file",
                str(tmp_path / "data.jsonl"), "--pipeline_inputs", "the film")
    assert (tmp_path / "predicted" / "predictions.txt").read_text().split() == expected


def test_mlm_then_fine_tune(tmp_path):
    sentences = ["The film is [MASK].", "A [MASK] performance.", "A [MASK] and [MASK] film."]
    with pytest.raises(ValueError, match=r"`--pipeline_inputs` sentence 'No mask.' has no \[MASK\]"):
        run_mlm.main(["--output_dir", str(tmp_path / "unmasked"), "--pipeline_inputs", "No mask."])
    assert not (tmp_path / "unmasked").exists()
    lines, metrics, _ = run_example(
        "run_mlm.py", tmp_path / "mlm", "--config_overrides", TINY_MODEL, *TEXT_RUN, "--pipeline_inputs", *sentences,
    )
    assert saved_config(tmp_path / "mlm")["architectures"] == ["GFNetForMaskedLM"]
    assert metrics["perplexity"] > 1
    assert [sentence for _, sentence in lines] == [*sentences, sentences[-1]]  # a line per mask
    for prediction, _ in lines:
        assert len(re.findall(r" \d\.\d\d", prediction)) == 3  # top_k=3 guesses with their scores

    _, metrics, log = run_example(
        "run_text_classification.py", tmp_path / "classifier", "--model_name_or_path", str(tmp_path / "mlm"),
        *SMALL_RUN, "--pipeline_inputs", "A wonderful film.",
    )
    newly_initialised = re.findall(r"^(\S+)\s+\| MISSING", log, flags=re.MULTILINE)
    # (transformers may print its load report more than once, e.g. to a non-interactive stderr)
    assert sorted(set(newly_initialised)) == ["classifier.bias", "classifier.weight"]  # the backbone is pre-trained
    assert saved_config(tmp_path / "classifier")["architectures"] == ["GFNetForSequenceClassification"]


def test_mlm_evaluations_score_the_same_masked_tokens(tmp_path):
    """run_mlm.py masks its evaluation set once: two evaluations of one model give the same loss, with right or left
    padding. Masked anew at each evaluation, as the training batches are, the loss moved between them."""
    texts = [f"the film number {n} was {'good' if n % 2 else 'dull'} and far too long" for n in range(24)]
    tokenizer = common.train_wordpiece_tokenizer(texts, vocab_size=60, model_max_length=32)
    tokenized = Dataset.from_dict({"text": texts}).map(
        lambda batch: tokenizer(batch["text"], return_special_tokens_mask=True), batched=True, remove_columns=["text"]
    )
    config = GFNetConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, intermediate_size=32,
                         max_position_embeddings=64)
    model = GFNetForMaskedLM(config)
    arguments = TrainingArguments(tmp_path, per_device_eval_batch_size=5, report_to="none", use_cpu=True)

    def masking(seed):
        return DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.3, seed=seed)

    def two_evaluations(eval_dataset, data_collator):
        trainer = Trainer(model, arguments, eval_dataset=eval_dataset, data_collator=data_collator)
        return [trainer.evaluate()["eval_loss"] for _ in range(2)]

    masked_once = run_mlm.mask_once(tokenized, masking(1))
    losses = two_evaluations(masked_once, run_mlm.MaskingCollator(masking(None), 0))
    assert losses[0] == losses[1]
    tokenizer.padding_side = "left"
    assert two_evaluations(masked_once, run_mlm.MaskingCollator(masking(None), 0)) == pytest.approx(losses, rel=1e-6)
    remasked = two_evaluations(tokenized, masking(0))
    assert remasked[0] != remasked[1]


def test_mlm_training_masks_depend_on_example_and_epoch_only(tmp_path):
    """run_mlm.py masks a training example from its index, the epoch and the seed: the same masks in any batch, with
    either padding side, and new ones each epoch; special tokens and padding are never masked or scored."""
    texts = [f"the film number {n} was {'good' if n % 2 else 'dull'} and far too long" * (1 + n % 3) for n in range(6)]
    tokenizer = common.train_wordpiece_tokenizer(texts, vocab_size=60, model_max_length=64)
    tokenized = Dataset.from_dict({"text": texts}).map(
        lambda batch: tokenizer(batch["text"], return_special_tokens_mask=True), batched=True, remove_columns=["text"]
    ).map(lambda _, index: {"example_index": index}, with_indices=True)
    examples = [dict(row) for row in tokenized]
    collator = run_mlm.MaskingCollator(DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.5), seed=3)

    def masks(batch_rows, epoch=0, padding_side="right"):
        """{example index: (input_ids, labels) of its real tokens} from one collated batch"""
        collator.epoch, tokenizer.padding_side = epoch, padding_side
        batch = collator([examples[row] for row in batch_rows])
        real = batch["attention_mask"].bool()
        assert (batch["labels"][~real] == -100).all()
        return {row: (ids[keep].tolist(), labels[keep].tolist())
                for row, ids, labels, keep in zip(batch_rows, batch["input_ids"], batch["labels"], real)}

    alone = {row: masks([row])[row] for row in range(6)}
    assert masks([5, 0, 3, 1, 4, 2]) == alone
    assert masks([2, 4, 1], padding_side="left") == {row: alone[row] for row in (2, 4, 1)}
    for row, (input_ids, labels) in alone.items():
        original = examples[row]["input_ids"]
        masked = [label != -100 for label in labels]
        assert [label for label, m in zip(labels, masked) if m] == [token for token, m in zip(original, masked) if m]
        assert not any(m and special for m, special in zip(masked, examples[row]["special_tokens_mask"]))
        assert 0 < sum(masked)
    next_epoch = masks(range(6), epoch=1)
    assert all(next_epoch[row] != alone[row] for row in range(6))
    assert masks(range(6), epoch=1) == next_epoch


def test_mlm_resumed_run_trains_like_the_uninterrupted_one(tmp_path):
    """A run_mlm.py run resumed from a checkpoint in the middle of its first epoch ends with the same weights as the
    run that went on: the training masks do not depend on a generator's state, which checkpoints do not hold."""
    run = ["--config_overrides", TINY_MODEL, "--vocab_size", "400", "--max_seq_length", "32", "--max_train_samples",
           "24", "--max_eval_samples", "8", "--per_device_train_batch_size", "8", "--max_steps", "5", "--save_strategy",
           "steps", "--save_steps", "2", "--eval_strategy", "no", "--pipeline_inputs", "A [MASK] film."]
    run_example("run_mlm.py", tmp_path / "whole", *run)
    run_example("run_mlm.py", tmp_path / "resumed", *run, "--resume_from_checkpoint",
                str(tmp_path / "whole" / "checkpoint-2"), "--tokenizer_name", str(tmp_path / "whole"))
    whole, resumed = (load_file(tmp_path / name / "model.safetensors") for name in ("whole", "resumed"))
    assert whole.keys() == resumed.keys()
    for name in whole:
        torch.testing.assert_close(resumed[name], whole[name], rtol=0, atol=0, msg=name)


@pytest.fixture(scope="module")
def saved_classifier(tmp_path_factory):
    """A tiny text classifier saved by the example with two epoch checkpoints and the best one loaded at the end;
    returns its output directory and metrics."""
    output_dir = tmp_path_factory.mktemp("saved") / "classifier"
    _, metrics, _ = run_example(
        "run_text_classification.py", output_dir, "--config_overrides", TINY_MODEL, *TEXT_RUN, "--num_train_epochs",
        "2", "--save_strategy", "epoch", "--load_best_model_at_end", "--metric_for_best_model", "accuracy",
        "--pipeline_inputs", "A wonderful film.",
    )
    return output_dir, metrics


def test_evaluating_a_checkpoint_on_data_with_some_of_its_classes(saved_classifier, tmp_path):
    """An evaluation set need not hold every class of the checkpoint (it was refused as needing other labels);
    a label the checkpoint does not have is refused."""
    model_dir, _ = saved_classifier
    rows = ["sentence,label", *(f"A fine film number {index}.,positive" for index in range(6))]
    (tmp_path / "positive.csv").write_text("\n".join(rows) + "\n")
    data = ["--train_file", str(tmp_path / "positive.csv"), "--validation_file", str(tmp_path / "positive.csv")]
    _, metrics, _ = run_example("run_text_classification.py", tmp_path / "eval", "--model_name_or_path",
                                str(model_dir), "--do_eval", *data, "--pipeline_inputs", "A film.")
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0
    (tmp_path / "neutral.csv").write_text("sentence,label\nA film.,neutral\nAnother film.,positive\n")
    with pytest.raises(ValueError, match=r"Labels \['neutral'\] of column 'label' .* not among the 2 labels of "):
        run_text_classification.main(["--output_dir", str(tmp_path / "neutral"), "--model_name_or_path",
                                      str(model_dir), "--do_eval", "--train_file", str(tmp_path / "neutral.csv"),
                                      "--validation_file", str(tmp_path / "neutral.csv")])
    # A training file alone: a random tenth of it was evaluated, the predictions numbered in that tenth.
    with pytest.raises(ValueError, match=r"without `--do_train` evaluate `--validation_file`, which is missing: a "
                                         r"tenth of `--train_file` would be cut at random"):
        run_text_classification.main(["--output_dir", str(tmp_path / "cut"), "--model_name_or_path", str(model_dir),
                                      "--do_predict", "--train_file", str(tmp_path / "positive.csv")])


def test_fine_tuning_keeps_the_label_order_of_a_classifier_with_the_datas_labels(saved_classifier, tmp_path):
    """A classifier whose outputs name the data's labels in another order than the example's (sorted) one: fine-tuning
    renumbered the labels and kept the classifier's rows, so that every prediction changed its label."""
    model_dir, _ = saved_classifier
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    with torch.no_grad():  # the same model with its two outputs swapped
        model.classifier.weight.copy_(model.classifier.weight.flip(0))
        model.classifier.bias.copy_(model.classifier.bias.flip(0))
    model.config.id2label = {0: "positive", 1: "negative"}
    model.config.label2id = {"positive": 0, "negative": 1}
    model.save_pretrained(tmp_path / "swapped")
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(tmp_path / "swapped")
    sentence = "A wonderful film."
    before = pipeline("text-classification", model=str(model_dir))(sentence)[0]
    lines, _, _ = run_example(  # a learning rate of 0 keeps the weights
        "run_text_classification.py", tmp_path / "tuned", "--model_name_or_path", str(tmp_path / "swapped"),
        *SMALL_RUN, "--max_steps", "1", "--learning_rate", "0", "--pipeline_inputs", sentence,
    )
    assert saved_config(tmp_path / "tuned")["id2label"] == {"0": "positive", "1": "negative"}
    label, score = lines[0][0].split()
    assert label == before["label"] and float(score) == pytest.approx(before["score"], abs=1e-3)


@pytest.mark.parametrize("saved,warned", [
    ("classifier", True),  # kept: its outputs now stand for other labels
    ("backbone", False),  # a backbone saved with its classifier's config: the classifier is new
    ("unnamed classifier", False),  # labels never named (LABEL_0, LABEL_1): nothing says they were others
])
def test_fine_tuning_warns_of_a_head_kept_for_other_labels(saved, warned, tmp_path, caplog):
    labels = dict(num_labels=2) if saved == "unnamed classifier" else common.label_fields(["neg", "pos"])
    model = GFNetForSequenceClassification(
        GFNetConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, intermediate_size=32, **labels)
    )
    (model.base_model if saved == "backbone" else model).save_pretrained(tmp_path / "checkpoint")
    config = GFNetConfig.from_pretrained(tmp_path / "checkpoint", **common.label_fields(["bad", "good"]))
    with caplog.at_level(logging.WARNING):
        common.load_model(AutoModelForSequenceClassification, SimpleNamespace(model_name_or_path=str(
            tmp_path / "checkpoint")), SimpleNamespace(do_train=True, process_index=0), config)
    warning = "trained for the labels ['neg', 'pos']; it keeps its weights, and its outputs now stand for the data's"
    assert (warning in caplog.text) == warned


def test_published_checkpoints_point_to_the_output_dir(saved_classifier, monkeypatch):
    """Trainer wrote its checkpoints in the work directory: the published ones must name the output directory."""
    output_dir, _ = saved_classifier
    checkpoints = sorted(output_dir.glob("checkpoint-*"))
    assert len(checkpoints) == 2
    monkeypatch.syspath_prepend(str(EXAMPLES))  # the saved arguments are the examples' TrainingArguments subclass
    for checkpoint in checkpoints:
        best = json.loads((checkpoint / "trainer_state.json").read_text())["best_model_checkpoint"]
        assert Path(best).parent == output_dir and Path(best).is_dir()
        assert torch.load(checkpoint / "training_args.bin", weights_only=False).output_dir == str(output_dir)


def test_evaluation_with_a_longer_tokenizer_ends_with_the_pipeline_at_the_models_length(saved_classifier, tmp_path):
    """`--tokenizer_name` saved with a longer `model_max_length` than the model's: the run evaluated at the model's
    length, then its pipeline truncated at the tokenizer's and failed, and nothing was published."""
    model_dir, _ = saved_classifier
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.model_max_length = 64
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    long_sentence = " ".join(["A wonderful film."] * 20)
    lines, _, _ = run_example(
        "run_text_classification.py", tmp_path / "eval", "--model_name_or_path", str(model_dir), "--tokenizer_name",
        str(tmp_path / "tokenizer"), "--do_eval", "--max_eval_samples", "8", "--pipeline_inputs", long_sentence,
    )
    assert [sentence for _, sentence in lines] == [long_sentence]


def test_evaluation_and_predictions_leave_the_model_unchanged(saved_classifier, tmp_path):
    model_dir, trained = saved_classifier
    weights = (model_dir / "model.safetensors").read_bytes()
    lines, metrics, _ = run_example(
        "run_text_classification.py", tmp_path, "--model_name_or_path", str(model_dir), "--do_eval", "--do_predict",
        "--max_eval_samples", "32", "--pipeline_inputs", "A wonderful film.",
    )
    assert "train_loss" not in metrics and not (tmp_path / "model.safetensors").exists()
    # The same model on the same data, at its own length (max_seq_length 32) as it was trained.
    assert metrics["eval_loss"] == pytest.approx(trained["eval_loss"], rel=1e-5)
    assert metrics["eval_accuracy"] == metrics["predict_accuracy"] == trained["eval_accuracy"]
    rows = (tmp_path / "predict_results.txt").read_text().splitlines()
    assert rows[0] == "index\tprediction" and len(rows) == 33
    assert {row.split("\t")[1] for row in rows[1:]} <= {"negative", "positive"}
    assert (model_dir / "model.safetensors").read_bytes() == weights
    assert [sentence for _, sentence in lines] == ["A wonderful film."]


def test_predictions_alone_cut_texts_at_max_seq_length_and_do_not_evaluate(saved_classifier, tmp_path):
    """`--do_predict` alone writes predictions and evaluates nothing (no eval_ metrics, no eval_results.json); a
    `--max_seq_length` shorter than the model's 32 positions cuts the texts there, as the predict loss of the model
    on texts of 6 tokens shows (it was ignored: the texts were cut at the model's length)."""
    model_dir, _ = saved_classifier
    _, metrics, _ = run_example(
        "run_text_classification.py", tmp_path, "--model_name_or_path", str(model_dir), "--do_predict",
        "--max_eval_samples", "16", "--max_seq_length", "6", "--pipeline_inputs", "A film.",
    )
    assert "predict_loss" in metrics and not any(key.startswith("eval_") for key in metrics)
    assert not (tmp_path / "eval_results.json").exists()
    validation = data.movie_reviews("classification")["validation"].select(range(16))
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    batch = tokenizer(list(validation["sentence"]), truncation=True, max_length=6, padding=True, return_tensors="pt")
    assert batch["input_ids"].shape[1] == 6
    with torch.no_grad():  # one batch of 16, padded as the data collator pads it
        loss = model(**batch, labels=torch.tensor(list(validation["label"]))).loss.item()
    assert metrics["predict_loss"] == pytest.approx(loss, rel=1e-4)


@pytest.mark.parametrize("arguments,error,message", [
    (["--config_overrides", "hidden_sise=64"], ValueError,
     r"Unknown config fields in `--config_overrides` for gfnet: \['hidden_sise'\]"),
    (["--config_overrides", "problem_type=regression"], ValueError,
     r"`--config_overrides` sets \['problem_type'\], which the example takes from the data and its own arguments"),
    (["--max_seq_length", "64"], ValueError,
     r"`--max_seq_length` 64 is longer than the model's max_position_embeddings \(32\); pass `--max_seq_length 32`"),
    (["--do_eval", "--task", "regression"], ValueError,
     r"`--model_name_or_path` .*classifier was trained with problem_type='single_label_classification', but the data "
     r"needs problem_type='regression'"),
    (["--config_overrides", "hidden_size=64"], ValueError,
     r"Weights of `--model_name_or_path` .*classifier outside the task head do not fit the requested "
     r"GFNetForSequenceClassification .*gfnet\.embeddings\..* \(.*, 32\) in the checkpoint, \(.*, 64\) in the model.*"
     r"differs from the checkpoint's in hidden_size=64 \(checkpoint: 32\)"),
])
def test_fine_tuning_command_line(saved_classifier, tmp_path, arguments, error, message):
    model_dir, _ = saved_classifier
    with pytest.raises(error, match=message):
        run_text_classification.main([
            "--output_dir", str(tmp_path / "out"), "--model_name_or_path", str(model_dir), "--max_train_samples", "8",
            "--num_train_epochs", "1", *arguments,
        ])
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def tiny_text_checkpoint(tmp_path_factory):
    """A 2-label GFNet text classifier saved by `save_pretrained` (hidden size 32, vocabulary 50)."""
    path = tmp_path_factory.mktemp("tiny") / "classifier"
    config = GFNetConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, intermediate_size=32,
                         max_position_embeddings=16, num_labels=2)
    GFNetForSequenceClassification(config).save_pretrained(path)
    return path


def load_for_fine_tuning(path, **config_fields):
    """`common.load_model` as a run with `--do_train` calls it, with the checkpoint's config and `config_fields`."""
    config = AutoConfig.from_pretrained(path, **config_fields)
    return common.load_model(AutoModelForSequenceClassification, SimpleNamespace(model_name_or_path=str(path)),
                             SimpleNamespace(do_train=True, process_index=0), config)


def test_fine_tuning_reinitialises_only_a_head_of_another_size(tiny_text_checkpoint):
    model = load_for_fine_tuning(tiny_text_checkpoint, num_labels=5)
    saved = GFNetForSequenceClassification.from_pretrained(tiny_text_checkpoint)
    assert model.classifier.weight.shape == (5, 32)
    backbone = model.gfnet.state_dict()
    assert all(torch.equal(backbone[name], value) for name, value in saved.gfnet.state_dict().items())


@pytest.mark.parametrize("field,weight", [
    ("hidden_size=64", r"word_embeddings\.weight \(50, 32\) in the checkpoint, \(50, 64\) in the model"),
    ("vocab_size=60", r"word_embeddings\.weight \(50, 32\) in the checkpoint, \(60, 32\) in the model"),
])
def test_fine_tuning_refuses_a_backbone_of_another_shape(tiny_text_checkpoint, field, weight):
    """Before, every mismatched weight was silently re-initialised: the run fine-tuned a partly untrained model."""
    name, value = field.split("=")
    checkpoint_value = {"hidden_size": 32, "vocab_size": 50}[name]
    with pytest.raises(ValueError, match=rf"outside the task head .*{weight}.* differs from the checkpoint's in "
                                         rf"{name}={value} \(checkpoint: {checkpoint_value}\)"):
        load_for_fine_tuning(tiny_text_checkpoint, num_labels=5, **{name: int(value)})


@pytest.mark.parametrize("fields,missing,differing", [
    # The mixer of layer 0 changes from a global filter to AFNO, whose weights the checkpoint lacks.
    (dict(mixer_layout=["afno"]), r"4 weights .* lacks: \['gfnet\.layers\.0\.mixer\.b1', .*\]\.",
     r"mixer_layout=\['afno'\] \(checkpoint: \['global_filter'\]\)"),
    (dict(num_hidden_layers=3, mixer_layout={"pattern": ["global_filter"]}),
     r"18 weights .* lacks: \['gfnet\.layers\.1\.mixer\.complex_weight', .*\] and 13 more\.",
     r"num_hidden_layers=3 \(checkpoint: 1\)"),
])
def test_fine_tuning_refuses_a_backbone_with_new_weights(tiny_text_checkpoint, fields, missing, differing):
    """Before, only weights of another shape were refused: new blocks or mixers were silently initialised."""
    with pytest.raises(ValueError, match=rf"The requested GFNetForSequenceClassification has {missing} The config "
                                         rf"differs from the checkpoint's in .*{differing}.*only it and the pooler may "
                                         r"be newly initialised or dropped"):
        load_for_fine_tuning(tiny_text_checkpoint, **fields)


@pytest.mark.parametrize("mixer,dropped", [("fourier", 1), ("none", 3)])  # "none" drops the mixer's norm too
def test_fine_tuning_refuses_to_drop_trained_backbone_weights(tiny_text_checkpoint, mixer, dropped):
    """A global filter replaced by a parameter-free mixer left its trained weights unused, silently."""
    with pytest.raises(ValueError, match=rf"{dropped} trained weights of `--model_name_or_path` .* have no place in "
                                         r"the requested GFNetForSequenceClassification and would be dropped: "
                                         r"\['gfnet\.layers\.0\.mixer\.complex_weight'.*\]\. The config differs from "
                                         rf"the checkpoint's in .*mixer_layout=\['{mixer}'\]"):
        load_for_fine_tuning(tiny_text_checkpoint, mixer_layout=[mixer])


def test_fine_tuning_initialises_a_missing_head_and_pooler(tmp_path):
    """Checkpoints of a bare backbone or of a masked-LM head have no classifier, and no pooler projection."""
    GFNetModel(GFNetConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, intermediate_size=32,
                           max_position_embeddings=16)).save_pretrained(tmp_path / "gfnet")
    model = load_for_fine_tuning(tmp_path / "gfnet", pooler_projection=True)
    assert model.gfnet.pooler.dense is not None
    BertForMaskedLM(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, intermediate_size=32,
                               num_attention_heads=4, max_position_embeddings=16)).save_pretrained(tmp_path / "bert")
    assert load_for_fine_tuning(tmp_path / "bert").bert.pooler is not None  # bert.pooler.dense.* newly initialised


def snapshot(folder):
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


@pytest.mark.parametrize("spelling", ["same path", "through ..", "symbolic link", "checkpoint inside", "tokenizer"])
def test_evaluation_refuses_an_output_dir_holding_its_model(saved_classifier, tmp_path, spelling):
    """A run without `--do_train` replaces `--output_dir` with its metrics: evaluating a model into its own folder
    (however the path is spelled) would delete the model, so it is refused before anything is written."""
    model_dir = tmp_path / "classifier"
    shutil.copytree(saved_classifier[0], model_dir)
    (tmp_path / "link").symlink_to(model_dir)
    checkpoint = sorted(model_dir.glob("checkpoint-*"))[0]
    model, tokenizer, output_dir = {
        "same path": (model_dir, None, model_dir),
        "through ..": (model_dir, None, model_dir / ".." / "classifier"),
        "symbolic link": (model_dir, None, tmp_path / "link"),
        "checkpoint inside": (checkpoint, None, model_dir),
        "tokenizer": (saved_classifier[0], model_dir, model_dir),
    }[spelling]
    flag = "tokenizer_name" if tokenizer else "model_name_or_path"
    before = snapshot(model_dir)
    with pytest.raises(ValueError, match=rf"`--{flag}` .* is \(or lies in\) `--output_dir` .*, which a run without "
                                         r"`--do_train` replaces .*the model would be lost"):
        run_text_classification.main([
            "--output_dir", str(output_dir), "--model_name_or_path", str(model), "--do_eval", "--do_predict",
            *(["--tokenizer_name", str(tokenizer)] if tokenizer else []),
        ])
    assert snapshot(model_dir) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["classifier", "link"]  # no work directory


def test_fresh_run_refuses_to_delete_the_checkpoint_it_loads(saved_classifier, tmp_path):
    """A run that does not resume deletes its work directory `<output_dir>.incomplete` first."""
    checkpoint = tmp_path / "out.incomplete" / "checkpoint-1"
    shutil.copytree(sorted(saved_classifier[0].glob("checkpoint-*"))[0], checkpoint)
    with pytest.raises(ValueError, match=r"`--model_name_or_path` .*checkpoint-1 lies in the work directory "
                                         r".*out\.incomplete .*which the run deletes when it starts"):
        run_text_classification.main(["--output_dir", str(tmp_path / "out"), "--model_name_or_path", str(checkpoint),
                                      "--do_train"])
    assert (checkpoint / "model.safetensors").is_file()


def resume_arguments(checkpoint, load_best=False):
    return SimpleNamespace(resume_from_checkpoint=str(checkpoint), do_train=True, load_best_model_at_end=load_best)


@pytest.mark.parametrize("case", ["missing folder", "not a checkpoint", "best checkpoint deleted"])
def test_resume_from_checkpoint_names_what_exists(saved_classifier, tmp_path, case):
    """Trainer raised deep in `train()` after the data was prepared for a missing folder, and for a deleted best
    checkpoint only warned, then ended with the last model despite `--load_best_model_at_end`."""
    model_dir, _ = saved_classifier
    checkpoints = sorted((path.name for path in model_dir.glob("checkpoint-*")), key=lambda n: int(n.split("-")[1]))
    for checkpoint in checkpoints:  # the published checkpoints resume, with their best model
        assert common.check_resume_checkpoint(resume_arguments(model_dir / checkpoint, load_best=True)) is None
    (tmp_path / "empty").mkdir()
    kept = tmp_path / "kept" / checkpoints[-1]
    shutil.copytree(model_dir / checkpoints[-1], kept)
    state = json.loads((kept / "trainer_state.json").read_text())
    state["best_model_checkpoint"] = str(tmp_path / "kept" / checkpoints[0])
    (kept / "trainer_state.json").write_text(json.dumps(state))
    checkpoint, message = {
        "missing folder": (model_dir / "checkpoint-99",
                           rf"checkpoint-99 is not a folder \(.*classifier holds {re.escape(str(checkpoints))}\)"),
        "not a checkpoint": (tmp_path / "empty",
                             r"empty is not a Trainer checkpoint: it needs trainer_state\.json and model weights, "
                             r"and holds \[\]"),
        "best checkpoint deleted": (kept, rf"The best checkpoint .*{checkpoints[0]} recorded in .* no longer "
                                          rf"exists \(.*kept holds \['{checkpoints[-1]}'\]\): with "
                                          r"`--load_best_model_at_end`"),
    }[case]
    with pytest.raises(FileNotFoundError, match=message):
        run_text_classification.main([
            "--output_dir", str(tmp_path / "out"), "--model_name_or_path", str(model_dir), "--do_train",
            "--resume_from_checkpoint", str(checkpoint), "--save_strategy", "epoch", "--load_best_model_at_end",
            "--metric_for_best_model", "accuracy",
        ])
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.incomplete").exists()
    # Without --load_best_model_at_end the deleted best is harmless (Trainer forgets it): no error.
    assert common.check_resume_checkpoint(resume_arguments(kept)) is None


@pytest.mark.parametrize("save_total_limit", [None, 1])
def test_run_resumed_from_a_published_checkpoint_keeps_its_best_one(saved_classifier, tmp_path, save_total_limit):
    """Resuming from a checkpoint in `--output_dir` replaces that folder when the run ends; the best checkpoint the
    resumed state names (the first one here, given a score no new evaluation reaches) must be published with the
    run, else the published state names a deleted folder. With `--save_total_limit 1` Trainer keeps no checkpoint
    of its own that names it: the run's final state does."""
    output_dir = tmp_path / "classifier"
    shutil.copytree(saved_classifier[0], output_dir)
    first, last = sorted(output_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    state = json.loads((last / "trainer_state.json").read_text())
    (last / "trainer_state.json").write_text(json.dumps({**state, "best_model_checkpoint": str(first),
                                                          "best_metric": 2.0}))
    best_weights = load_file(first / "model.safetensors")
    run_text_classification.main([
        "--output_dir", str(output_dir), "--tokenizer_name", str(output_dir), "--config_overrides", TINY_MODEL,
        *TEXT_RUN, "--num_train_epochs", "3", "--save_strategy", "epoch", "--load_best_model_at_end",
        "--metric_for_best_model", "accuracy", "--resume_from_checkpoint", str(last),
        "--pipeline_inputs", "A wonderful film.",
        *(["--save_total_limit", str(save_total_limit)] if save_total_limit else []),
    ])
    published = sorted(path.name for path in output_dir.glob("checkpoint-*"))
    new = [name for name in published if name != first.name]
    assert first.name in published and (first / "model.safetensors").is_file()
    assert len(new) == (1 if save_total_limit is None else 0), published  # the new epoch's, unless over the limit
    for state_file in [output_dir / "trainer_state.json", *(output_dir / name / "trainer_state.json" for name in new)]:
        assert json.loads(state_file.read_text())["best_model_checkpoint"] == str(first)
    final = load_file(output_dir / "model.safetensors")
    assert all(torch.equal(final[name], value) for name, value in best_weights.items())


def test_resumed_run_keeps_the_tokenizer_of_its_checkpoint(saved_classifier, tmp_path):
    """A run that trained its tokenizer, resumed on changed data (here more samples) without `--tokenizer_name`,
    trained a new tokenizer, whose ids named other tokens than the checkpoint's embeddings were trained for."""
    last = max(saved_classifier[0].glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    run_text_classification.main([
        "--output_dir", str(tmp_path / "resumed"), "--config_overrides", TINY_MODEL, *TEXT_RUN,
        "--max_train_samples", "128", "--num_train_epochs", "3", "--resume_from_checkpoint", str(last),
    ])
    assert saved_vocabulary(tmp_path / "resumed") == saved_vocabulary(last)


def write_state(checkpoint, best):
    """A checkpoint folder whose trainer_state.json names `best` as the best checkpoint."""
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"best_model_checkpoint": str(best)}))


def best_named_in(checkpoint):
    return json.loads((checkpoint / "trainer_state.json").read_text())["best_model_checkpoint"]


@pytest.mark.parametrize("spelling", ["through ..", "symbolic link"])
def test_saved_state_is_rewritten_however_the_output_dir_is_spelled(tmp_path, spelling):
    """A resumed run may spell `--output_dir` otherwise than the run that wrote the checkpoints (`../c` from a
    sub-folder, a link to the parent folder): the states must still name the published checkpoints, and a best
    checkpoint in `--output_dir` must still be carried over. Paths compared unresolved matched neither."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "link").symlink_to(tmp_path)
    # Checkpoints of the first run (`--output_dir c`): one published in c, one left in c.incomplete by an interrupted
    # run resumed from it; the resumed run's new checkpoint names the best one as Trainer saved it.
    write_state(tmp_path / "c" / "checkpoint-4", tmp_path / "c" / "checkpoint-4")
    write_state(tmp_path / "c.incomplete" / "checkpoint-8", tmp_path / "c.incomplete" / "checkpoint-8")
    write_state(tmp_path / "c.incomplete" / "checkpoint-12", tmp_path / "c" / "checkpoint-4")
    output_dir = {"through ..": tmp_path / "sub" / ".." / "c", "symbolic link": tmp_path / "link" / "c"}[spelling]
    work_dir = common.work_dir_for(output_dir)
    common.point_saved_state_to(output_dir, work_dir, SimpleNamespace())
    assert best_named_in(work_dir / "checkpoint-8") == str(output_dir / "checkpoint-8")
    assert best_named_in(work_dir / "checkpoint-12") == str(tmp_path / "c" / "checkpoint-4")
    assert best_named_in(work_dir / "checkpoint-4") == str(tmp_path / "c" / "checkpoint-4")  # carried over


@pytest.fixture(scope="module")
def image_checkpoints(tmp_path_factory):
    """16-pixel GFNet and ViT image classifiers saved by `save_pretrained` (3 classes, 4-pixel patches), and a GFNet
    text classifier."""
    folder = tmp_path_factory.mktemp("image_checkpoints")
    sizes = dict(hidden_size=32, num_hidden_layers=1, intermediate_size=32, image_size=16, patch_size=4, num_labels=3)
    GFNetForImageClassification(GFNetConfig(**sizes)).save_pretrained(folder / "gfnet")
    ViTForImageClassification(ViTConfig(**sizes, num_attention_heads=4)).save_pretrained(folder / "vit")
    text = GFNetConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, intermediate_size=32, num_labels=3)
    GFNetForSequenceClassification(text).save_pretrained(folder / "text")
    return folder


@pytest.mark.parametrize("model,arguments,message", [
    ("gfnet", ["--do_eval", "--image_size", "8"],
     r"Image size 8 \(`--image_size`\) differs from the 16 px that `--model_name_or_path` .*gfnet was trained at, "
     r"and `--do_eval` / `--do_predict` without `--do_train` evaluate the checkpoint as it is"),
    ("gfnet", ["--do_predict", "--image_size", "8"],
     r"Image size 8 .* add `--do_train` to fine-tune the model at 8 px"),
    ("vit", ["--do_train", "--image_size", "32"],
     r"Image size 32 .* differs from the 16 px of the vit checkpoint .* cannot be resized \(only \['gfnet', 'afno', "
     r"'fnet_hybrid'\] can\)"),
    # Through the config, the ViT's position embeddings would have been newly initialised.
    ("vit", ["--do_train", "--config_overrides", "image_size=32"], r"Image size 32 .* cannot be resized"),
    ("gfnet", ["--do_train", "--image_size", "8", "--config_overrides", "image_size=12"],
     r"`--image_size` 8 and `--config_overrides image_size=12` disagree; give the image size once"),
    # One size spelled twice agrees (it was reported as disagreeing); the ViT then refuses it as another size.
    ("vit", ["--do_train", "--image_size", "32", "--config_overrides", "image_size=[32,32]"],
     r"Image size 32 .* cannot be resized"),
    # A text checkpoint has no image size: it failed with a TypeError (`square(None)`, or later in the processor).
    ("text", ["--do_train", "--image_size", "16"],
     r"`--model_name_or_path` .*text is a gfnet checkpoint without an image_size in its config\.json: not an image "
     r"model \(a text model\?\)\. Pass an image model \(\['gfnet', 'afno', 'fnet_hybrid', 'vit'\] with an image_size"),
    ("text", ["--do_train"], r"`--model_name_or_path` .*text is a gfnet checkpoint without an image_size"),
    # saved without a processor: it failed looking for one on the hub
    ("gfnet", ["--do_train"], r"`--model_name_or_path` .*gfnet holds no image processor \(preprocessor_config.json\)"),
])
def test_image_size_of_a_checkpoint_is_checked(image_checkpoints, tmp_path, model, arguments, message):
    with pytest.raises(ValueError, match=message):
        run_image_classification.main(["--output_dir", str(tmp_path / "out"), "--model_name_or_path",
                                       str(image_checkpoints / model), *arguments])
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.incomplete").exists()


def test_image_model_of_other_than_three_channels_is_refused_before_training(tmp_path):
    """The processor and the pipeline make RGB images: a one-channel model (natural for the grayscale digits)
    failed at its first training step."""
    with pytest.raises(ValueError, match=r"`--config_overrides` ask for num_channels=1, but this example trains RGB "
                                         r"image classifiers \(num_channels=3\)"):
        run_image_classification.main(["--output_dir", str(tmp_path / "out"), "--config_overrides",
                                       f"{TINY_MODEL},num_channels=1", "--do_train"])
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.incomplete").exists()


def test_image_size_from_config_overrides_then_fine_tuned_at_another_size(tmp_path):
    """The processor resizes to the final config's image size: 8-pixel digits to a 16-pixel model, whose checkpoint
    then fine-tunes at 8 pixels (position embeddings and filters resized)."""
    lines, _, _ = run_example("run_image_classification.py", tmp_path / "16px", "--config_overrides",
                              f"{TINY_MODEL},image_size=16", *SMALL_RUN, "--num_pipeline_images", "0")
    # the patch follows the size asked for, as with `--image_size 16`: an 8 x 8 grid, not 16 x 16 one-pixel patches
    assert saved_config(tmp_path / "16px")["image_size"] == 16 and saved_config(tmp_path / "16px")["patch_size"] == 2
    assert lines == []
    run_example("run_image_classification.py", tmp_path / "8px", "--model_name_or_path", str(tmp_path / "16px"),
                "--image_size", "8", *SMALL_RUN, "--num_pipeline_images", "1")
    assert saved_config(tmp_path / "8px")["image_size"] == 8
    processor = json.loads((tmp_path / "8px" / "preprocessor_config.json").read_text())
    assert processor["size"] == {"height": 8, "width": 8}


def test_a_checkpoints_center_cropping_processor_makes_images_of_the_models_size(tmp_path):
    """A checkpoint's processor that resizes the short edge and center-crops (as CLIP's and DeiT's do) is set to
    the model's image size in both steps: it kept its crop size, which then mismatched the model."""
    CLIPImageProcessor(size={"shortest_edge": 20}, crop_size={"height": 20, "width": 20}).save_pretrained(tmp_path)
    config = SimpleNamespace(image_size=[8, 12])
    processor = run_image_classification.image_processor_for(SimpleNamespace(model_name_or_path=str(tmp_path)), config)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 17, 3), dtype=np.uint8))
    assert tuple(processor(image, return_tensors="pt").pixel_values.shape) == (1, 3, 8, 12)


def test_a_checkpoints_processor_converts_images_to_rgb(tmp_path):
    """Grayscale, palette and RGBA images become the RGB a 3-channel model takes, also with a checkpoint's
    processor that does not convert (converted originals had one): the digits failed in the normalisation."""
    ViTImageProcessor(size={"height": 8, "width": 8}, do_convert_rgb=False).save_pretrained(tmp_path)
    config = SimpleNamespace(image_size=8)
    processor = run_image_classification.image_processor_for(SimpleNamespace(model_name_or_path=str(tmp_path)), config)
    for mode in ("L", "P", "RGBA"):
        image = Image.new(mode, (5, 7))
        assert tuple(processor(image, return_tensors="pt").pixel_values.shape) == (1, 3, 8, 8), mode


def test_evaluating_an_image_checkpoint_at_its_size_spelled_otherwise_and_on_some_of_its_classes(tmp_path):
    """`--image_size 8` for a checkpoint saved with image_size [8, 8] is its own size: evaluation-only runs
    refused it as other labels' fields. A folder of some of its classes is scored with the checkpoint's ids."""
    run_example("run_image_classification.py", tmp_path / "model", "--config_overrides",
                f"{TINY_MODEL},image_size=[8,8]", *SMALL_RUN, "--num_pipeline_images", "1")
    run_example("run_image_classification.py", tmp_path / "eval", "--model_name_or_path", str(tmp_path / "model"),
                "--do_eval", "--image_size", "8")

    # on a folder of two of its ten digits: each image keeps the checkpoint's id of its class (7 is not 1)
    digits = data.images()["validation"]
    for index, example in enumerate(digits.select(range(40))):
        name = digits.features["label"].int2str(example["label"])
        if name in ("3", "7"):
            (tmp_path / "folder" / name).mkdir(parents=True, exist_ok=True)
            example["image"].save(tmp_path / "folder" / name / f"{index}.png")
    folder = ["--train_dir", str(tmp_path / "folder"), "--validation_dir", str(tmp_path / "folder")]
    _, on_folder, _ = run_example("run_image_classification.py", tmp_path / "folder_eval", "--model_name_or_path",
                                  str(tmp_path / "model"), "--do_eval", *folder, "--num_pipeline_images", "0")
    model = AutoModelForImageClassification.from_pretrained(tmp_path / "model").eval()
    processor = AutoImageProcessor.from_pretrained(tmp_path / "model")
    files = sorted((tmp_path / "folder").glob("*/*.png"))
    with torch.no_grad():
        pixel_values = processor([Image.open(file) for file in files], return_tensors="pt").pixel_values
        predicted = [model.config.id2label[i] for i in model(pixel_values=pixel_values).logits.argmax(-1).tolist()]
    expected = sum(label == file.parent.name for label, file in zip(predicted, files)) / len(files)
    assert on_folder["eval_accuracy"] == pytest.approx(expected)
    assert "eval_accuracy" in json.loads((tmp_path / "eval" / "eval_results.json").read_text())

    # A folder of one class is evaluated (it was refused as needing two), and the pipeline lines name each image's
    # own class as its true label (they named the checkpoint's class of the folder's id: "0" for every 7).
    shutil.copytree(tmp_path / "folder" / "7", tmp_path / "sevens" / "7")
    sevens = ["--train_dir", str(tmp_path / "sevens"), "--validation_dir", str(tmp_path / "sevens")]
    lines, _, _ = run_example("run_image_classification.py", tmp_path / "sevens_eval", "--model_name_or_path",
                              str(tmp_path / "model"), "--do_eval", *sevens, "--num_pipeline_images", "2")
    assert [truth for _, truth in lines] == ["true label 7"] * 2


@pytest.mark.parametrize("model_type", ["vit", *FAMILIES])
def test_image_classification(tmp_path, model_type):
    lines, metrics, _ = run_example(
        "run_image_classification.py", tmp_path, "--model_type", model_type, "--config_overrides", TINY_MODEL,
        *SMALL_RUN, "--num_pipeline_images", "3",
    )
    names = set(saved_config(tmp_path)["id2label"].values())
    assert (tmp_path / "preprocessor_config.json").is_file()
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0
    assert len(lines) == 3
    for prediction, truth in lines:
        assert prediction.split()[0] in names and truth.removeprefix("true label ") in names


def accelerator_count():
    """How many GPUs (or other accelerator devices) torch sees; before torch 2.6 (no `torch.accelerator`), CUDA's."""
    return torch.accelerator.device_count() if hasattr(torch, "accelerator") else torch.cuda.device_count()


@pytest.mark.parametrize("script", ["run_text_classification.py", "run_token_classification.py"])
def test_two_processes_match_one(tmp_path, script):
    """Same global batch (2 x 4 vs 1 x 8), same data order and initialisation: the reported train and eval losses
    must match the single-process run (they double if a model ignores `num_items_in_batch`; a single process
    with batches of 4 would take twice the steps and end at another loss)."""
    run = [*TEXT_RUN, "--max_train_samples", "96", "--config_overrides", TINY_MODEL, "--logging_steps", "1"]
    # Without an accelerator the examples run on the CPU (gloo) by default; each of the 2 processes needs a device
    # of its own otherwise, so with fewer both runs use the CPU.
    if common.accelerator_available() and accelerator_count() < 2:
        run.append("--use_cpu")
    _, single, _ = run_example(script, tmp_path / "one", *run, "--per_device_train_batch_size", "8",
                               "--per_device_eval_batch_size", "8")
    # Each run trains its own tokenizer: the vocabularies must agree too (the trainer's ties are broken in
    # character order, not in an order that changes with the process).
    _, double, _ = run_example(
        script, tmp_path / "two", *run, "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4",
        launcher=(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"),
    )
    assert saved_vocabulary(tmp_path / "two") == saved_vocabulary(tmp_path / "one")
    assert double["train_loss"] == pytest.approx(single["train_loss"], rel=1e-3)
    # Trainer's eval loss is the mean of per-batch losses, and a token-level batch loss is a mean over that batch's
    # tokens: batches of 4 and 8 weight tokens slightly differently, so only a doubling is excluded here.
    assert double["eval_loss"] == pytest.approx(single["eval_loss"], rel=1e-2)
