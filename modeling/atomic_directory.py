"""Output directories written all at once, for the converters and the example scripts.

The result is built in a work directory beside the destination (`<name>.incomplete`) and moved into place only
when everything in it has been written, so a run that fails or is interrupted never leaves a half-written model
directory where a finished one is expected. An existing destination is replaced only when it is empty or holds the
output of an earlier run and nothing else (`holds_earlier_output`: a saved model, or an example run's results, with
no hidden entries such as `.git` and no folders but Trainer's); anything else is refused unless the caller asks to
overwrite it, so that a mistyped path cannot delete unrelated files, and a destination that contains one of the
run's inputs or the current working directory is always refused. So is a destination that is a symbolic link:
publishing renames directory entries, so it would replace the link by a folder and leave the folder it points to as
it was.
"""

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME

WORK_SUFFIX = ".incomplete"
REPLACED_SUFFIX = ".replaced"
WEIGHT_FILES = (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_NAME, WEIGHTS_INDEX_NAME)


def absolute_path(path):
    """`path` made absolute with `.` and `..` removed, so that `out/..` names the folder it means, not one called
    `..` (symbolic links are kept: an output directory that is one is refused, not followed)."""
    return Path(os.path.abspath(path))


def work_dir_for(output_dir):
    """The work directory of `output_dir`: its sibling `<name>.incomplete`, the same in every process."""
    output_dir = absolute_path(output_dir)
    return output_dir.with_name(output_dir.name + WORK_SUFFIX)


def holds_saved_model(directory):
    """Whether `directory` holds a model written by `save_pretrained`: a `config.json` naming a `model_type`, and
    weights beside it (any other folder with a config.json, e.g. a project's own settings, is not one)."""
    directory = Path(directory)
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError):
        return False
    has_weights = any((directory / name).is_file() for name in WEIGHT_FILES)
    return isinstance(config, dict) and "model_type" in config and has_weights


RESULTS_FILE = "all_results.json"  # the metrics every example run writes, also one that saves no model (--do_eval)


# Folders a run leaves in its output: Trainer checkpoints and TensorBoard logs.
RUN_FOLDERS = re.compile(r"checkpoint-\d+|runs")


def foreign_entries(directory):
    """Names in `directory` that no run writes: hidden entries (`.git`, `.venv`) and folders other than
    `RUN_FOLDERS` (e.g. a project's `src`), which say that a saved model there sits in something else."""
    return sorted(
        entry.name for entry in Path(directory).iterdir()
        if entry.name.startswith(".") or (entry.is_dir() and not RUN_FOLDERS.fullmatch(entry.name))
    )


def holds_run_output(directory):
    """Whether `directory` holds what a run of this project leaves: a saved model (`holds_saved_model`) or the
    metrics of an example run (`RESULTS_FILE`), whatever else it holds."""
    return holds_saved_model(directory) or (Path(directory) / RESULTS_FILE).is_file()


def holds_earlier_output(directory):
    """Whether `directory` holds a run's output (`holds_run_output`) and nothing else (no `foreign_entries`)."""
    return holds_run_output(directory) and not foreign_entries(directory)


def lies_in(path, folder):
    """Whether `path` is `folder` or lies in it, once symbolic links and `..` are resolved."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


def check_output_dir(output_dir, overwrite=False, overwrite_option="overwrite=True", inputs=()):
    """Raise `ValueError` unless `output_dir` may receive a new result: it does not exist, is an empty directory,
    holds the output of an earlier run (`holds_earlier_output`), or `overwrite` is set. Whatever `overwrite` says,
    it must not be a symbolic link (even a dangling one), nor contain the current working directory, and none of the
    paths `inputs` (what the run reads, e.g. the checkpoint it converts) may lie in it; its work directory must be
    absent or a folder. `overwrite_option` is how the caller's user asks for `overwrite` (a command-line flag), named
    in the message."""
    output_dir = absolute_path(output_dir)
    if output_dir.is_symlink():
        # Refused before the run rather than followed: `publish` renames the link itself, and replacing the folder
        # it points to instead could need a move across file systems, after the run, from the work directory.
        raise ValueError(
            f"The output directory {output_dir} is a symbolic link to {os.readlink(output_dir)}: the result would "
            f"replace the link, not the folder it points to. Pass that folder ({output_dir.resolve()}) or another "
            "output directory."
        )
    work_dir = work_dir_for(output_dir)
    if work_dir.is_symlink() or (work_dir.exists() and not work_dir.is_dir()):
        raise ValueError(
            f"{work_dir}, where the run would write its result before moving it to {output_dir}, exists and is not "
            "a folder; move it away or pass another output directory."
        )
    if not output_dir.exists():
        existing = next(parent for parent in output_dir.parents if parent.exists())
        if not existing.is_dir():
            raise ValueError(
                f"The output directory {output_dir} cannot be created: {existing} is a file. Pass a path under a "
                "folder."
            )
        return
    if not output_dir.is_dir():
        raise ValueError(f"The output directory {output_dir} is an existing file; pass a directory path.")
    if lies_in(Path.cwd(), output_dir):
        raise ValueError(
            f"The output directory {output_dir} is (or contains) the current working directory {Path.cwd()}, which "
            "the run would replace when it finishes; pass a folder inside it, e.g. ./outputs."
        )
    for path in inputs:
        if lies_in(path, output_dir):
            raise ValueError(
                f"The input {path} lies in the output directory {output_dir}, which the run replaces when it "
                "finishes; pass another output directory."
            )
    entries = sorted(entry.name for entry in output_dir.iterdir())
    if not entries or holds_earlier_output(output_dir) or overwrite:
        return
    foreign = foreign_entries(output_dir)
    if foreign and holds_run_output(output_dir):
        problem = (
            f"holds an earlier run's output but also {foreign[:5]}{' ...' if len(foreign) > 5 else ''}, which no "
            "run writes (hidden entries, folders other than checkpoint-N and runs)"
        )
    else:
        problem = (
            f"is not empty and holds no saved model (a config.json with a model_type, and weights) nor an example "
            f"run's {RESULTS_FILE}: {entries[:5]}{' ...' if len(entries) > 5 else ''}"
        )
    raise ValueError(
        f"The output directory {output_dir} {problem}. Pass a new or empty directory or the output of an earlier run "
        f"(both are replaced), or {overwrite_option} to replace it anyway."
    )


def publish(work_dir, output_dir):
    """Move the finished `work_dir` to `output_dir`. An existing `output_dir` is renamed aside first and deleted
    after the move, so `output_dir` is at every moment the old directory, the new one, or (between two renames)
    absent, never a mix of both. `output_dir` must not be a symbolic link (`check_output_dir` refuses one)."""
    output_dir = absolute_path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    if not output_dir.exists():
        os.replace(work_dir, output_dir)
        return
    # A new empty folder to rename the old output onto: a fixed name could be someone's folder, deleted below.
    replaced = tempfile.mkdtemp(prefix=output_dir.name + REPLACED_SUFFIX + "-", dir=output_dir.parent)
    os.replace(output_dir, replaced)
    os.replace(work_dir, output_dir)
    shutil.rmtree(replaced)


@contextlib.contextmanager
def atomic_directory(output_dir, overwrite=False, overwrite_option="overwrite=True"):
    """Yield an empty work directory to write the result into; when the block finishes, move it to `output_dir`
    (`publish`), and when the block raises, delete it, and the parent folders created for it, and leave
    `output_dir` as it was.

        with atomic_directory("converted") as work_dir:
            model.save_pretrained(work_dir)
            image_processor.save_pretrained(work_dir)
    """
    check_output_dir(output_dir, overwrite, overwrite_option)
    work_dir = work_dir_for(output_dir)
    shutil.rmtree(work_dir, ignore_errors=True)  # left behind by a killed run
    created_parents = [folder for folder in work_dir.parents if not folder.exists()]  # deepest first
    work_dir.mkdir(parents=True)
    try:
        yield work_dir
    except BaseException:
        shutil.rmtree(work_dir, ignore_errors=True)
        for folder in created_parents:  # while empty: something else may have been put there meanwhile
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    publish(work_dir, output_dir)
