"""`atomic_directory`: which existing output directories it replaces and which it refuses, leaving them as they
were (a symbolic link once crashed publishing after the run, and left the link renamed aside and a new folder in
its place; a project folder that also held a saved model was once replaced whole)."""

import json
import os
import re

import pytest

from fourierformers.atomic_directory import atomic_directory, check_output_dir


def saved_model(folder):
    """A folder that `holds_saved_model`, as an earlier run leaves it; returns its files."""
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gfnet"}))
    (folder / "model.safetensors").write_bytes(b"weights")
    return {path.name: path.read_bytes() for path in folder.iterdir()}


@pytest.mark.parametrize("target", ["earlier run", "dangling"])
def test_output_dir_that_is_a_symbolic_link_is_refused(tmp_path, target):
    earlier = tmp_path / "earlier"
    files = saved_model(earlier) if target == "earlier run" else None
    link = tmp_path / "latest"
    link.symlink_to(earlier)
    with pytest.raises(ValueError, match=rf"The output directory .*latest is a symbolic link to .*earlier: the result "
                                         rf"would replace the link, not the folder it points to\. Pass that folder "
                                         rf"\({re.escape(str(earlier))}\) or another output directory\."):
        with atomic_directory(link, overwrite=True) as work_dir:
            (work_dir / "config.json").write_text("{}")
    assert link.is_symlink() and link.readlink() == earlier
    if files is not None:
        assert {path.name: path.read_bytes() for path in earlier.iterdir()} == files
    assert sorted(path.name for path in tmp_path.iterdir()) == (["earlier"] if files else []) + ["latest"]


def test_output_of_an_evaluation_run_is_replaced(tmp_path):
    """An example run with `--do_eval` only saves metrics, no model; running it again into the same folder replaces
    them, as for any earlier run's output (it was refused as a folder holding no saved model)."""
    earlier = tmp_path / "eval"
    earlier.mkdir()
    (earlier / "all_results.json").write_text(json.dumps({"eval_loss": 1.0}))
    (earlier / "eval_results.json").write_text(json.dumps({"eval_loss": 1.0}))
    with atomic_directory(earlier) as work_dir:
        (work_dir / "all_results.json").write_text(json.dumps({"eval_loss": 0.5}))
    assert [path.name for path in earlier.iterdir()] == ["all_results.json"]
    (earlier / "notes.txt").write_text("mine")
    (earlier / "all_results.json").unlink()
    with pytest.raises(ValueError, match=r"holds no saved model .* nor an example run's all_results.json"):
        with atomic_directory(earlier):
            pass


@pytest.mark.parametrize("extra", [".git", "src"])
def test_saved_model_inside_something_else_is_refused(tmp_path, extra):
    """A folder holding a saved model next to a hidden entry or a folder no run writes is not an earlier run's
    output: replacing it would delete the rest."""
    project = tmp_path / "project"
    files = saved_model(project)
    (project / extra).mkdir()
    (project / extra / "kept.txt").write_text("mine")
    with pytest.raises(ValueError, match=rf"holds an earlier run's output but also \['{re.escape(extra)}'\], which no "
                                         r"run writes .* or overwrite=True to replace it anyway"):
        with atomic_directory(project) as work_dir:
            (work_dir / "config.json").write_text("{}")
    assert (project / extra / "kept.txt").read_text() == "mine"
    assert {path.name: path.read_bytes() for path in project.iterdir() if path.is_file()} == files
    assert sorted(path.name for path in tmp_path.iterdir()) == ["project"]


def test_trainer_folders_belong_to_an_earlier_run(tmp_path):
    earlier = tmp_path / "earlier"
    saved_model(earlier)
    (earlier / "checkpoint-10").mkdir()
    (earlier / "runs").mkdir()
    with atomic_directory(earlier) as work_dir:
        (work_dir / "all_results.json").write_text("{}")
    assert [path.name for path in earlier.iterdir()] == ["all_results.json"]


@pytest.mark.parametrize("spelling", [".", "..", "{cwd}"])
def test_output_dir_containing_the_working_directory_is_refused(tmp_path, monkeypatch, spelling):
    project = tmp_path / "project"
    saved_model(project)
    (project / "train.py").write_text("mine")
    (project / "inner").mkdir()
    monkeypatch.chdir(project / "inner" if spelling == ".." else project)
    before = sorted(os.listdir(project))
    with pytest.raises(ValueError, match=r"is \(or contains\) the current working directory .*pass a folder inside it"):
        with atomic_directory(spelling.format(cwd=project), overwrite=True):
            pass
    assert sorted(os.listdir(project)) == before and sorted(os.listdir(tmp_path)) == ["project"]


def test_dot_dot_in_the_output_dir_names_the_folder_it_means(tmp_path):
    with atomic_directory(tmp_path / "a" / "b" / "..") as work_dir:
        assert work_dir == tmp_path / "a.incomplete"
        (work_dir / "all_results.json").write_text("{}")
    assert sorted(os.listdir(tmp_path)) == ["a"] and os.listdir(tmp_path / "a") == ["all_results.json"]


def test_a_users_folder_named_like_the_replaced_output_is_kept(tmp_path):
    earlier = tmp_path / "out"
    saved_model(earlier)
    (tmp_path / "out.replaced").mkdir()
    (tmp_path / "out.replaced" / "kept.txt").write_text("mine")
    with atomic_directory(earlier) as work_dir:
        (work_dir / "all_results.json").write_text("{}")
    assert (tmp_path / "out.replaced" / "kept.txt").read_text() == "mine"
    assert sorted(os.listdir(tmp_path)) == ["out", "out.replaced"]


@pytest.mark.parametrize("kind", ["symbolic link", "file"])
def test_work_dir_that_is_not_a_folder_is_refused(tmp_path, kind):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    work_dir = tmp_path / "out.incomplete"
    work_dir.symlink_to(elsewhere) if kind == "symbolic link" else work_dir.write_text("mine")
    with pytest.raises(ValueError, match=r"out\.incomplete, where the run would write its result before moving it "
                                         r"to .*out, exists and is not a folder"):
        with atomic_directory(tmp_path / "out"):
            pass
    assert work_dir.is_symlink() if kind == "symbolic link" else work_dir.read_text() == "mine"
    assert not (tmp_path / "out").exists()


def test_output_dir_under_a_file_is_refused_before_the_run(tmp_path):
    (tmp_path / "model.pth").write_text("")
    with pytest.raises(ValueError, match=r"cannot be created: .*model.pth is a file"):
        check_output_dir(tmp_path / "model.pth" / "converted")


def test_a_failed_run_removes_the_parent_folders_it_created(tmp_path):
    """An output path under folders that do not exist yet: a run that fails leaves none of them behind, and keeps a
    folder that something else put a file into meanwhile."""
    with pytest.raises(RuntimeError, match="the run failed"):
        with atomic_directory(tmp_path / "new" / "deeper" / "out") as work_dir:
            (work_dir / "config.json").write_text("{}")
            raise RuntimeError("the run failed")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="the run failed"):
        with atomic_directory(tmp_path / "new" / "deeper" / "out"):
            (tmp_path / "new" / "notes.txt").write_text("someone else's")
            raise RuntimeError("the run failed")
    assert sorted(path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("*")) == ["new", "new/notes.txt"]
    with atomic_directory(tmp_path / "new" / "deeper" / "out") as work_dir:
        (work_dir / "config.json").write_text("{}")
    assert (tmp_path / "new" / "deeper" / "out" / "config.json").read_text() == "{}"


def test_a_work_dir_left_by_a_killed_run_is_cleared(tmp_path):
    """A run killed before publishing leaves `<name>.incomplete` behind: the next run starts in an empty work
    directory, succeeds, and publishes none of the stale files."""
    stale = tmp_path / "out.incomplete"
    stale.mkdir()
    (stale / "stale.bin").write_bytes(b"from the killed run")
    with atomic_directory(tmp_path / "out") as work_dir:
        assert list(work_dir.iterdir()) == []
        (work_dir / "config.json").write_text("{}")
    assert sorted(os.listdir(tmp_path)) == ["out"] and os.listdir(tmp_path / "out") == ["config.json"]


def test_a_config_without_weights_is_not_a_saved_model(tmp_path):
    """A folder holding a config.json with a model_type but no weights (a config someone keeps there) is not an
    earlier run's output, and is refused; with weights beside the config it is."""
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gfnet"}))
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"is not empty and holds no saved model"):
        check_output_dir(folder)
    (folder / "model.safetensors").write_bytes(b"weights")
    check_output_dir(folder)


def test_an_empty_output_dir_receives_the_result(tmp_path):
    (tmp_path / "out").mkdir()
    with atomic_directory(tmp_path / "out") as work_dir:
        (work_dir / "config.json").write_text("{}")
    assert os.listdir(tmp_path / "out") == ["config.json"] and sorted(os.listdir(tmp_path)) == ["out"]


def test_saved_model_beside_a_hidden_file_is_refused(tmp_path):
    """A hidden file (`.env`, `.gitattributes`) is no run's output either: the folder is someone's project."""
    project = tmp_path / "project"
    saved_model(project)
    (project / ".env").write_text("TOKEN=mine")
    with pytest.raises(ValueError, match=r"holds an earlier run's output but also \['\.env'\], which no run writes"):
        check_output_dir(project)
    assert (project / ".env").read_text() == "TOKEN=mine"
