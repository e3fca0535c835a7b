"""End-to-end runs of the example scripts on small slices of their default data with tiny configs: training,
evaluation with the local metrics, saving, and the pipeline each script runs at the end. Plus a 2-process
`torchrun` run (the README's command, without `--use_cpu`) whose losses must equal the single-process run's (the
`num_items_in_batch` handling)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import FAMILIES

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
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


def test_mlm_then_fine_tune(tmp_path):
    sentences = ["The film is [MASK].", "A [MASK] performance."]
    lines, metrics, _ = run_example(
        "run_mlm.py", tmp_path / "mlm", "--config_overrides", TINY_MODEL, *TEXT_RUN, "--pipeline_inputs", *sentences,
    )
    assert saved_config(tmp_path / "mlm")["architectures"] == ["GFNetForMaskedLM"]
    assert metrics["perplexity"] > 1
    assert [sentence for _, sentence in lines] == sentences
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


@pytest.mark.parametrize("script", ["run_text_classification.py", "run_token_classification.py"])
def test_two_processes_match_one(tmp_path, script):
    """Same global batch (2 x 4 vs 1 x 8), same data order and initialisation: the reported train and eval losses
    must match the single-process run (they double if a model ignores `num_items_in_batch`; a single process
    with batches of 4 would take twice the steps and end at another loss)."""
    run = [*TEXT_RUN, "--max_train_samples", "96", "--config_overrides", TINY_MODEL, "--logging_steps", "1"]
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
