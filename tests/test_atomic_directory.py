"""`atomic_directory` with an output directory that is a symbolic link: refused before the run, link and target
left as they were (publishing once crashed after the run, and left the link renamed aside and a new folder in its
place)."""

import json
import re

import pytest

from fourierformers.atomic_directory import atomic_directory


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
