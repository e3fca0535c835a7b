"""Converters of original GFNet, GFNet-H and AFNO-transformer checkpoints against the reference fixtures, the
checkpoint file formats they accept, the image processor they save, and their errors."""

import argparse
import importlib.util
import io
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification, pipeline
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))

import convert_original_afno  # noqa: E402
import convert_original_gfnet  # noqa: E402
import original_checkpoint  # noqa: E402
from conftest import SHARED  # noqa: E402
from convert_original_afno import convert_afno_checkpoint, convert_fourcastnet_checkpoint  # noqa: E402
from convert_original_gfnet import convert_gfnet_checkpoint  # noqa: E402
from fourierformers import GFNetConfig  # noqa: E402

FIXTURES = SHARED / "fixtures"


def fixture_options(name):
    """Converter and options for a fixture: what its config.json says the checkpoint cannot tell."""
    config = json.loads((FIXTURES / name / "config.json").read_text())
    if name.startswith("gfnet"):
        return convert_gfnet_checkpoint, {}
    return convert_afno_checkpoint, {
        "hard_thresholding_fraction": config["hard_thresholding_fraction"],
        "sparsity_threshold": config["sparsity_threshold"],
        "double_skip": config["double_skip"],
    }


@pytest.mark.shared
@pytest.mark.parametrize("name", ["gfnet", "gfnet_h", "afno", "afno_trunc"])
def test_converted_model_reproduces_fixture(name):
    convert, options = fixture_options(name)
    model = convert(FIXTURES / name / "state_dict.safetensors", **options)
    # a checkpoint cannot tell its LayerNorm eps, and another one stays within 1e-4 of the fixture's outputs
    assert model.config.layer_norm_eps == json.loads((FIXTURES / name / "config.json").read_text())["layer_norm_eps"]
    pixel_values = load_file(FIXTURES / name / "inputs.safetensors")["pixel_values"]
    reference = load_file(FIXTURES / name / "outputs.safetensors")
    with torch.no_grad():
        logits = model(pixel_values=pixel_values).logits
        features = model.base_model(pixel_values=pixel_values).pooler_output
    torch.testing.assert_close(logits, reference["logits"], atol=1e-4, rtol=0)
    torch.testing.assert_close(features, reference["features"], atol=1e-4, rtol=0)


@pytest.mark.shared
def test_converted_fourcastnet_reproduces_fixture(tmp_path):
    """FourCastNet's released format: a `model_state` entry with DDP `module.` prefixes."""
    name = "afno_fourcastnet"
    state_dict = load_file(FIXTURES / name / "state_dict.safetensors")
    torch.save({"model_state": {"module." + k: v for k, v in state_dict.items()}, "iters": 7}, tmp_path / "ckpt.tar")
    model = convert_fourcastnet_checkpoint(tmp_path / "ckpt.tar", image_size=(32, 64))
    pixel_values = load_file(FIXTURES / name / "inputs.safetensors")["pixel_values"]
    reference = load_file(FIXTURES / name / "outputs.safetensors")
    with torch.no_grad():
        outputs = model(pixel_values=pixel_values)
    torch.testing.assert_close(outputs.predictions, reference["output"], atol=1e-4, rtol=0)
    torch.testing.assert_close(outputs.last_hidden_state, reference["features"].flatten(1, -2), atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="pos_embed has 128"):
        convert_fourcastnet_checkpoint(tmp_path / "ckpt.tar", image_size=(64, 64))
    with pytest.raises(ValueError, match="not FourCastNet"):
        convert_fourcastnet_checkpoint(FIXTURES / "afno" / "state_dict.safetensors", image_size=(32, 32))
    with pytest.raises(ValueError, match=r"head has no bias, as FourCastNet's .*: convert it with `--fourcastnet`"):
        convert_afno_checkpoint(tmp_path / "ckpt.tar")


@pytest.mark.parametrize("grid,fraction,expected", [
    ((8, 8), 0.5, [[3, 4, 5, 6], [0, 1]]),  # total 5, kept 2: rows [3, 7), columns [0, 2)
    ((8, 8), 1.0, [None, None]),  # rows [0, 10) clamped to all 8, all 5 columns
    ((6, 10), 1.0, [None, [0, 1, 2, 3]]),  # total 4, kept 4: columns past H // 2 dropped where W > H
    ((7, 4), 0.6, [[2, 3, 4, 5], [0, 1]]),  # total 4, kept 2
    ((8, 4), 1.0, [None, None]),  # total 5, kept 5: columns clamped to the rfft's 3 where H > W
])
def test_fourcastnet_keeps_the_modes_of_its_afno2d(grid, fraction, expected):
    """FourCastNet's AFNO2D computes on `x[:, total - kept : total + kept, :kept]` of the rfft2, with total = H // 2
    + 1 and kept = int(total * fraction); None where every index of an axis is kept."""
    assert convert_original_afno.fourcastnet_kept_modes(grid, fraction) == expected


@pytest.mark.shared
def test_afno_trunc_mode_region_matters():
    """Converting afno_trunc without its fraction gives other logits: the truncation is really exercised."""
    model = convert_afno_checkpoint(FIXTURES / "afno_trunc" / "state_dict.safetensors")
    pixel_values = load_file(FIXTURES / "afno_trunc" / "inputs.safetensors")["pixel_values"]
    reference = load_file(FIXTURES / "afno_trunc" / "outputs.safetensors")["logits"]
    with torch.no_grad():
        assert (model(pixel_values=pixel_values).logits - reference).abs().max() > 1e-2


@pytest.mark.shared
@pytest.mark.parametrize("layout", ["model", "model_state_module_prefix", "plain", "training", "named"])
def test_pth_checkpoint_layouts(tmp_path, layout):
    """Released weights, FourCastNet's DDP checkpoints, a plain state dict, a training checkpoint of the originals'
    (DeiT's) loop with its argparse options (refused as unsafe), and a dict naming its model beside its
    `state_dict` (the string was taken for the state dict)."""
    state_dict = load_file(FIXTURES / "gfnet" / "state_dict.safetensors")
    if layout == "model":
        checkpoint = {"model": state_dict, "epoch": torch.tensor(3)}
    elif layout == "model_state_module_prefix":
        checkpoint = {"model_state": {"module." + key: value for key, value in state_dict.items()}}
    elif layout == "training":
        optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))])
        checkpoint = {"model": state_dict, "optimizer": optimizer.state_dict(), "epoch": 299, "model_ema": state_dict,
                      "scaler": {"scale": 65536.0}, "args": argparse.Namespace(arch="gfnet-xs", input_size=32)}
    elif layout == "named":
        checkpoint = {"model": "gfnet-xs", "state_dict": state_dict}
    else:
        checkpoint = state_dict
    torch.save(checkpoint, tmp_path / "checkpoint.pth")
    model = convert_gfnet_checkpoint(tmp_path / "checkpoint.pth")
    pixel_values = load_file(FIXTURES / "gfnet" / "inputs.safetensors")["pixel_values"]
    reference = load_file(FIXTURES / "gfnet" / "outputs.safetensors")["logits"]
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values=pixel_values).logits, reference, atol=1e-4, rtol=0)


@pytest.mark.shared
def test_mismatched_checkpoints_fail_clearly(tmp_path):
    afno_path = FIXTURES / "afno" / "state_dict.safetensors"
    with pytest.raises(ValueError, match="not an original GFNet checkpoint"):
        convert_gfnet_checkpoint(afno_path)
    with pytest.raises(ValueError, match="not an original AFNO-transformer"):
        convert_afno_checkpoint(FIXTURES / "gfnet" / "state_dict.safetensors")
    state_dict = load_file(FIXTURES / "gfnet" / "state_dict.safetensors")
    state_dict["blocks.1.filter.complex_weight"] = state_dict["blocks.1.filter.complex_weight"][:4]
    save_file(state_dict, tmp_path / "truncated.safetensors")
    with pytest.raises(ValueError, match="Shape mismatch for gfnet.layers.1.mixer.complex_weight"):
        convert_gfnet_checkpoint(tmp_path / "truncated.safetensors")
    torch.save({"optimizer": {"lr": 0.1}}, tmp_path / "no_model.pth")
    with pytest.raises(ValueError, match="not a model state dict"):
        convert_gfnet_checkpoint(tmp_path / "no_model.pth")


@pytest.mark.shared
@pytest.mark.parametrize("name,script,model_name", [
    ("gfnet", convert_original_gfnet, "GFNetModel"),
    ("gfnet_h", convert_original_gfnet, "GFNetModel"),
    ("afno", convert_original_afno, "AFNOModel"),
])
def test_checkpoint_without_a_head_converts_to_the_backbone(name, script, model_name, tmp_path):
    """The originals build no head with num_classes=0; such a checkpoint was refused as "not an original
    checkpoint". The backbone's pooled output is the original's forward_features."""
    state_dict = load_file(FIXTURES / name / "state_dict.safetensors")
    headless = {key: value for key, value in state_dict.items() if not key.startswith("head.")}
    save_file(headless, tmp_path / "in.safetensors")
    script.main([str(tmp_path / "in.safetensors"), str(tmp_path / "converted")])
    model = AutoModel.from_pretrained(tmp_path / "converted").eval()
    assert type(model).__name__ == model_name
    pixel_values = load_file(FIXTURES / name / "inputs.safetensors")["pixel_values"]
    reference = load_file(FIXTURES / name / "outputs.safetensors")["features"]
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values=pixel_values).pooler_output, reference, atol=1e-4, rtol=0)


@pytest.mark.shared
@pytest.mark.parametrize("name,script", [("gfnet", convert_original_gfnet), ("afno", convert_original_afno)])
def test_labels_option_names_the_classes_the_pipeline_reports(name, script, tmp_path):
    num_classes = load_file(FIXTURES / name / "state_dict.safetensors")["head.weight"].shape[0]
    names = [f"class {index} ({name})" for index in range(num_classes)]
    names[-1] = names[0]  # ImageNet-1k's list has "crane" twice (the bird and the machine)
    # with a byte-order mark, which is not part of the first name
    (tmp_path / "labels.txt").write_text("\n".join(names) + "\n\n", encoding="utf-8-sig")
    script.main([str(FIXTURES / name / "state_dict.safetensors"), str(tmp_path / "out"),
                 "--labels", str(tmp_path / "labels.txt")])
    config = AutoConfig.from_pretrained(tmp_path / "out")
    assert config.id2label == dict(enumerate(names)) and config.label2id == {n: i for i, n in enumerate(names)}
    classifier = pipeline("image-classification", model=str(tmp_path / "out"))
    predictions = classifier(Image.new("RGB", (40, 30), (200, 40, 90)), top_k=num_classes)
    assert sorted(prediction["label"] for prediction in predictions) == sorted(names)


@pytest.mark.shared
@pytest.mark.parametrize("lines,flags,message", [
    (["cat", "dog"], [], r"--labels gives 2 class names; the checkpoint's head has \d+ classes"),
    (["cat", "", "dog"], [], r"must hold one class name per line, with no blank line between"),
    (["cat"], ["--headless"], r"--labels names the classes of a classification head; this checkpoint has none"),
], ids=["too few", "blank line", "no head"])
def test_labels_option_refuses_names_that_do_not_fit(lines, flags, message, tmp_path, capsys):
    state_dict = load_file(FIXTURES / "gfnet" / "state_dict.safetensors")
    if flags == ["--headless"]:
        state_dict = {key: value for key, value in state_dict.items() if not key.startswith("head.")}
    save_file(state_dict, tmp_path / "in.safetensors")
    (tmp_path / "labels.txt").write_text("\n".join(lines))
    with pytest.raises(SystemExit):
        convert_original_gfnet.main([str(tmp_path / "in.safetensors"), str(tmp_path / "out"),
                                     "--labels", str(tmp_path / "labels.txt")])
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_fourcastnet_refuses_labels(tmp_path, capsys):
    (tmp_path / "labels.txt").write_text("cat\n")
    with pytest.raises(SystemExit):
        convert_original_afno.main([str(tmp_path / "in.pth"), str(tmp_path / "out"), "--fourcastnet",
                                    "--labels", str(tmp_path / "labels.txt")])
    assert "--labels names the classes of an image classifier; FourCastNet" in capsys.readouterr().err


def with_mlp_width(state_dict, width, blocks_prefix):
    """The checkpoint with MLP hidden width `width` (random weights) in the blocks whose keys start with
    `blocks_prefix`."""
    state_dict = dict(state_dict)
    for key in [key for key in state_dict if key.startswith(blocks_prefix) and ".mlp." in key]:
        shape = list(state_dict[key].shape)
        if ".fc1." in key:
            shape[0] = width
        elif key.endswith("fc2.weight"):
            shape[1] = width
        state_dict[key] = torch.randn(shape)
    return state_dict


@pytest.mark.shared
def test_options_the_checkpoint_cannot_tell_reach_the_saved_config(tmp_path):
    """--double-skip, --sparsity-threshold and --drop-path-rate of the AFNO converter and --drop-path-rate of the GFNet
    converter set what a checkpoint does not store: each reaches the saved config."""
    convert_original_afno.main([str(FIXTURES / "afno" / "state_dict.safetensors"), str(tmp_path / "afno"),
                                "--double-skip", "--sparsity-threshold", "0.05", "--drop-path-rate", "0.1"])
    config = AutoConfig.from_pretrained(tmp_path / "afno")
    assert (config.mixer_residual, config.afno_sparsity_threshold, config.drop_path_rate) == (True, 0.05, 0.1)
    convert_original_gfnet.main([str(FIXTURES / "gfnet" / "state_dict.safetensors"), str(tmp_path / "gfnet"),
                                 "--drop-path-rate", "0.2"])
    assert AutoConfig.from_pretrained(tmp_path / "gfnet").drop_path_rate == 0.2


def test_a_tar_archive_goes_to_torch_load_as_the_oldest_torch_save_format(tmp_path):
    """torch.save's oldest format is a tar archive: it is read by torch.load (whose error says why it cannot be),
    not refused as "not a checkpoint file"."""
    path = tmp_path / "checkpoint.tar"
    with tarfile.open(path, "w") as archive:
        archive.addfile(tarfile.TarInfo("sys_info"), io.BytesIO(b""))
    assert original_checkpoint.is_torch_save_file(path)
    with pytest.raises(ValueError, match=r"Cannot read .*checkpoint.tar as a torch.save file"):
        original_checkpoint.read_checkpoint_file(path)


@pytest.mark.shared
def test_gfnet_mlp_width_is_read_as_it_is(tmp_path):
    """The original builds `int(width * mlp_ratio)` for any ratio: a ratio of 2.5 was rounded down to 2 and the
    checkpoint blamed for its shapes. GFNet-H with a ratio per stage cannot be represented and is refused by name."""
    state_dict = with_mlp_width(load_file(FIXTURES / "gfnet" / "state_dict.safetensors"), 160, "blocks.")
    save_file(state_dict, tmp_path / "ratio_2.5.safetensors")
    model = convert_gfnet_checkpoint(tmp_path / "ratio_2.5.safetensors")
    assert model.config.intermediate_size == 160
    torch.testing.assert_close(model.gfnet.layers[1].mlp.fc2.weight, state_dict["blocks.1.mlp.fc2.weight"])
    pyramid = with_mlp_width(load_file(FIXTURES / "gfnet_h" / "state_dict.safetensors"), 100, "blocks.1.")
    save_file(pyramid, tmp_path / "ratio_per_stage.safetensors")
    with pytest.raises(ValueError, match=r"MLP widths \[64, 100, 192, 256\] for stage widths \[16, 32, 48, 64\]"):
        convert_gfnet_checkpoint(tmp_path / "ratio_per_stage.safetensors")


@pytest.mark.shared
def test_resized_gfnet_follows_original_finetune_interpolation():
    """At another image size, filters are resized bicubic with align_corners=True over (h, w) per real/imaginary
    plane and position embeddings bicubic with align_corners=False, as the original fine-tuning script."""
    source = load_file(FIXTURES / "gfnet" / "state_dict.safetensors")
    model = convert_gfnet_checkpoint(FIXTURES / "gfnet" / "state_dict.safetensors", image_size=48)
    assert model.config.grid_shape == (12, 12)
    weight = source["blocks.0.filter.complex_weight"]  # (8, 5, C, 2)
    h, w, channels, _ = weight.shape
    planes = weight.reshape(1, h, w, 2 * channels).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(planes, size=(12, 7), mode="bicubic", align_corners=True)
    expected = expected.permute(0, 2, 3, 1).reshape(12, 7, channels, 2)
    torch.testing.assert_close(model.gfnet.layers[0].mixer.complex_weight.data, expected)
    position = source["pos_embed"].reshape(1, 8, 8, -1).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(position, size=(12, 12), mode="bicubic", align_corners=False)
    torch.testing.assert_close(model.gfnet.embeddings.position_embeddings.data, expected.permute(0, 2, 3, 1))
    assert model(pixel_values=torch.randn(1, 3, 48, 48)).logits.shape == (1, 10)


@pytest.mark.shared
@pytest.mark.slow
def test_command_line_writes_a_loadable_directory(tmp_path):
    name = "afno_trunc"
    command = [sys.executable, str(SCRIPTS / "convert_original_afno.py"),
               str(FIXTURES / name / "state_dict.safetensors"), str(tmp_path / "converted"),
               "--hard-thresholding-fraction", "0.1"]
    subprocess.run(command, check=True, capture_output=True)
    model = AutoModelForImageClassification.from_pretrained(tmp_path / "converted").eval()
    assert AutoImageProcessor.from_pretrained(tmp_path / "converted").size == {"height": 32, "width": 32}
    pixel_values = load_file(FIXTURES / name / "inputs.safetensors")["pixel_values"]
    reference = load_file(FIXTURES / name / "outputs.safetensors")["logits"]
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values=pixel_values).logits, reference, atol=1e-4, rtol=0)


def renumbered(state_dict, old_prefix, new_prefix):
    return {key.replace(old_prefix, new_prefix, 1) if key.startswith(old_prefix) else key: value
            for key, value in state_dict.items()}


def convert_fixture_checkpoint(name, path):
    """Convert the checkpoint `path`, a changed copy of fixture `name`'s, with that fixture's converter."""
    if name == "afno_fourcastnet":
        return convert_fourcastnet_checkpoint(path, image_size=(32, 64))
    return fixture_options(name)[0](path)


# Each row: fixture, how its state dict is broken, the error. They used to fail with KeyError, AttributeError or
# "not enough values to unpack", or named converter options (depths, double_skip) that the converters do not have.
MALFORMED_ROWS = {
    "GFNet-H with 3 stages": (
        "gfnet_h", lambda sd: {k: v for k, v in sd.items() if not k.startswith(("blocks.3.", "patch_embed.3."))},
        r"original GFNet-H checkpoint \(GFNetPyramid\) has 4 stages S = 0 to 3, each with keys patch_embed.S.proj.\* "
        r"and blocks.S.J.\*; this checkpoint has patch_embed.S for S = \[0, 1, 2\] and blocks.S for S = \[0, 1, 2\]"),
    "GFNet-H with 5 block stages": (
        "gfnet_h", lambda sd: {**sd, **renumbered({k: v for k, v in sd.items() if k.startswith("blocks.3.")},
                                                  "blocks.3.", "blocks.4.")},
        r"has 4 stages .* patch_embed.S for S = \[0, 1, 2, 3\] and blocks.S for S = \[0, 1, 2, 3, 4\]\."),
    "GFNet block numbers with a gap": (
        "gfnet", lambda sd: renumbered(sd, "blocks.2.", "blocks.5."),
        r"The modules blocks.N of an original GFNet checkpoint are numbered N = 0, 1, 2, ... without gaps; this "
        r"checkpoint has N = \[0, 1, 5\]\."),
    "GFNet-H stage with a gap": (
        "gfnet_h", lambda sd: renumbered(sd, "blocks.2.1.", "blocks.2.3."),
        r"The modules blocks.2.N of an original GFNet-H checkpoint are numbered .* has N = \[0, 3\]\."),
    "GFNet-H unexpected key": (
        "gfnet_h", lambda sd: {**sd, "blocks.0.weird": torch.zeros(3)},
        r"keys are not those of an original GFNet-H checkpoint: unexpected \['blocks.0.weird'\]\. With its depths "
        r"\[1, 1, 2, 1\] \(blocks per stage\) it would hold patch_embed.S.proj.\{weight,bias\} for S = 0 to 3, "),
    "GFNet missing key": (
        "gfnet", lambda sd: {k: v for k, v in sd.items() if k != "blocks.1.norm1.bias"},
        r"keys are not those of an original GFNet checkpoint: missing \['blocks.1.norm1.bias'\]\. With its 3 blocks "
        r"it would hold .*blocks.I.\{norm1.weight, norm1.bias, .*\} for I = 0 to 2"),
    "GFNet-H LayerScale in some blocks": (
        "gfnet_h", lambda sd: {k: v for k, v in sd.items() if k != "blocks.2.1.gamma"},
        r"GFNet-H checkpoint: missing \['blocks.2.1.gamma'\]\. .*\(LayerScale gamma in every block or in none\)"),
    "GFNet pos_embed with two rows": (
        "gfnet", lambda sd: {**sd, "pos_embed": torch.cat([sd["pos_embed"]] * 2)},
        r"pos_embed must be a 3-D tensor of shape \(1, num_patches, hidden_size\) in an original GFNet checkpoint; "
        r"in this checkpoint it has shape \(2, 64, 64\)\."),
    "GFNet pos_embed of no square grid": (
        "gfnet", lambda sd: {**sd, "pos_embed": sd["pos_embed"][:, :63]},
        r"pos_embed has 63 tokens, not a square grid\."),
    "GFNet 3-D patch embedding": (
        "gfnet", lambda sd: {**sd, "patch_embed.proj.weight": sd["patch_embed.proj.weight"][..., 0]},
        r"patch_embed.proj.weight must be a 4-D tensor of shape \(hidden_size, in_chans, patch_size, patch_size\) in "
        r"an original GFNet checkpoint; in this checkpoint it has shape \(64, 3, 4\)\."),
    "GFNet-H 3-D downsampling": (
        "gfnet_h", lambda sd: {**sd, "patch_embed.2.proj.weight": sd["patch_embed.2.proj.weight"][..., 0]},
        r"patch_embed.2.proj.weight must be a 4-D tensor of shape \(hidden_size_2, hidden_size_1, 2, 2\) in an "
        r"original GFNet-H checkpoint; in this checkpoint it has shape \(48, 32, 2\)\."),
    "AFNO 3-D w1": (
        "afno", lambda sd: {**sd, "blocks.0.filter.w1": sd["blocks.0.filter.w1"][0]},
        r"blocks.0.filter.w1 must be a 4-D tensor of shape \(2, num_blocks, block_size, block_size \* "
        r"hidden_size_factor\) in an original AFNO-transformer checkpoint; in this checkpoint it has shape "
        r"\(4, 16, 16\)\."),
    "AFNO block numbers with a gap": (
        "afno", lambda sd: renumbered(sd, "blocks.1.", "blocks.4."),
        r"The modules blocks.N of an original AFNO-transformer checkpoint .* has N = \[0, 2, 4\]\."),
    "AFNO unexpected key": (
        "afno", lambda sd: {**sd, "blocks.1.filter.scale": torch.ones(1)},
        r"original AFNO-transformer checkpoint: unexpected \['blocks.1.filter.scale'\]\. With its 3 blocks it would "
        r"hold .*blocks.I.\{norm1.weight, .*\} for I = 0 to 2, norm.\{weight,bias\} and head.weight and head.bias\."),
    "AFNO later block's tensor of another shape": (
        "afno", lambda sd: {**sd, "blocks.1.filter.w1": sd["blocks.1.filter.w1"][0]},
        r"Shape mismatch for afno.layers.1.mixer.w1: checkpoint \(4, 16, 16\), model \(2, 4, 16, 16\)\. The model's "
        r"sizes were read from the shapes of patch_embed.proj.weight, pos_embed, blocks.0.filter.w1, "),
    "FourCastNet missing key": (
        "afno_fourcastnet", lambda sd: {k: v for k, v in sd.items() if k != "blocks.1.mlp.fc2.bias"},
        r"original FourCastNet AFNO checkpoint: missing \['blocks.1.mlp.fc2.bias'\]\. With its 2 blocks it would "
        r"hold .* norm.\{weight,bias\} and head.weight\."),
}


@pytest.mark.shared
@pytest.mark.parametrize("row", MALFORMED_ROWS)
def test_malformed_checkpoint_names_the_expected_layout(tmp_path, row):
    name, mutate, message = MALFORMED_ROWS[row]
    state_dict = mutate(load_file(FIXTURES / name / "state_dict.safetensors"))
    # Copies: a view or a tensor under two keys cannot be saved.
    save_file({key: value.clone(memory_format=torch.contiguous_format) for key, value in state_dict.items()},
              tmp_path / "malformed.safetensors")
    with pytest.raises(ValueError, match=message):
        convert_fixture_checkpoint(name, tmp_path / "malformed.safetensors")


def with_input_channels(state_dict, channels):
    """The checkpoint with a patch embedding that takes `channels` input channels."""
    weight = state_dict["patch_embed.proj.weight"]
    return {**state_dict, "patch_embed.proj.weight": torch.randn(weight.shape[0], channels, *weight.shape[2:])}


@pytest.mark.shared
@pytest.mark.parametrize("name,channels,note", [
    ("gfnet", 3, None),
    ("gfnet", 1, r"No image processor saved: the checkpoint's patch embedding takes 1-channel inputs, while an image "
                 r"processor \(and pipeline\(\)\) makes 3-channel RGB images\. Give the model pixel_values of shape "
                 r"\(batch, 1, 32, 32\), normalised as in training\."),
    ("afno", 3, None),
    ("afno", 20, r"patch embedding takes 20-channel inputs, .* pixel_values of shape \(batch, 20, 32, 32\)"),
    ("afno_fourcastnet", 3, r"No image processor saved: a patch regression model \(FourCastNet\) takes 3 channels "
                            r"of normalised physical fields, not RGB images\. .*\(batch, 3, 32, 64\)"),
], ids=["gfnet RGB", "gfnet 1 channel", "afno RGB", "afno 20 channels", "fourcastnet"])
def test_image_processor_is_saved_only_for_rgb_image_classifiers(tmp_path, capsys, name, channels, note):
    """The image processor resizes RGB images and normalises them with ImageNet statistics; for other inputs it
    would be meaningless (and a pipeline could not feed the model), so the script says what to give instead."""
    state_dict = with_input_channels(load_file(FIXTURES / name / "state_dict.safetensors"), channels)
    save_file(state_dict, tmp_path / "checkpoint.safetensors")
    script = convert_original_gfnet if name.startswith("gfnet") else convert_original_afno
    flags = ["--fourcastnet", "--image-size", "32", "64"] if name == "afno_fourcastnet" else []
    script.main([str(tmp_path / "checkpoint.safetensors"), str(tmp_path / "converted"), *flags])
    printed = capsys.readouterr().out
    assert (tmp_path / "converted" / "preprocessor_config.json").exists() == (note is None)
    assert json.loads((tmp_path / "converted" / "config.json").read_text())["num_channels"] == channels
    if note is None:
        assert "image processor" not in printed
        processor = json.loads((tmp_path / "converted" / "preprocessor_config.json").read_text())
        assert processor["do_convert_rgb"] is True  # grayscale or RGBA images would fail in the normalisation
    else:
        assert re.search(note, printed)


@pytest.mark.shared
@pytest.mark.parametrize("name", ["gfnet", "gfnet_h", "afno", "afno_trunc", "afno_fourcastnet", "fnet"])
def test_fixture_checker_passes_with_our_hook(name, capsys):
    """The fixtures' own checker (`check_fixture.py --loader tests/fixture_hooks.py`, as the hook's docstring says)
    compares every output a fixture holds: FourCastNet's features failed on their shape and FNet was not loadable."""
    spec = importlib.util.spec_from_file_location("check_fixture", FIXTURES / "check_fixture.py")
    check_fixture = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check_fixture)
    passed = check_fixture.check(name, str(Path(__file__).parent / "fixture_hooks.py"))
    printed = capsys.readouterr().out
    assert passed, printed
    compared = set(re.findall(r"^  (\S+) +max abs diff", printed, flags=re.MULTILINE))
    assert compared == set(load_file(FIXTURES / name / "outputs.safetensors")), printed


def original_evaluation_transform(image, size):
    """The originals' evaluation transform (DeiT's `build_transform`, is_train=False) on a PIL image, as a
    (1, 3, size, size) tensor: above 32 pixels, torchvision's Resize(int(256 / 224 * size)) of the shorter side
    (bicubic) and CenterCrop(size); then ToTensor and ImageNet Normalize. The crop offset is rounded down here, as
    transformers' crop does; torchvision rounds a half to even, one pixel further where the margin is odd."""
    if size > 32:
        short = int(256 / 224 * size)
        width, height = image.size
        if width <= height:
            width, height = short, int(short * height / width)
        else:
            width, height = int(short * width / height), short
        image = image.resize((width, height), Image.BICUBIC)
        left, top = (width - size) // 2, (height - size) // 2
        image = image.crop((left, top, left + size, top + size))
    pixels = (np.asarray(image, dtype=np.float32) / 255 - IMAGENET_DEFAULT_MEAN) / IMAGENET_DEFAULT_STD
    return torch.from_numpy(pixels).float().permute(2, 0, 1)[None]


@pytest.mark.parametrize("size", [32, 64, 384])
def test_image_processor_follows_the_original_evaluation_transform(size):
    """The saved processor resized every image to the square image size (stretching it) with bilinear sampling:
    the pipeline's top class differed from the original evaluation's on 21 of 30 non-square images."""
    processor = original_checkpoint.image_processor_for(GFNetConfig(image_size=size, patch_size=4))
    generator = np.random.default_rng(0)
    for height, width in [(size, size), (size + 37, 2 * size + 5), (3 * size, size + 10)]:
        image = Image.fromarray(generator.integers(0, 256, (height, width, 3), dtype=np.uint8))
        if size <= 32:  # the originals took CIFAR's 32 x 32 images as they were
            image = image.resize((size, size))
        pixel_values = processor(image, return_tensors="pt")["pixel_values"]
        torch.testing.assert_close(pixel_values, original_evaluation_transform(image, size), atol=1e-5, rtol=0)


@pytest.mark.parametrize("script,flags,bad_value", [
    ("afno", ["--fourcastnet", "--image-size", "-32", "-64"], "-32"),
    ("afno", ["--fourcastnet", "--image-size", "32", "0"], "0"),
    ("gfnet", ["--image-size", "-32"], "-32"),
    ("gfnet", ["--image-size", "0"], "0"),
], ids=["afno -32 -64", "afno 32 0", "gfnet -32", "gfnet 0"])
def test_image_size_option_must_be_positive(tmp_path, capsys, script, flags, bad_value):
    """-32 -64 used to reach FourCastNet's mode selection ("hard_thresholding_fraction=1.0 keeps no frequency")."""
    main = {"afno": convert_original_afno.main, "gfnet": convert_original_gfnet.main}[script]
    with pytest.raises(SystemExit):
        main([str(tmp_path / "in.pth"), str(tmp_path / "out"), *flags])
    assert f"argument --image-size: must be a positive integer, got '{bad_value}'" in capsys.readouterr().err


@pytest.mark.shared
@pytest.mark.parametrize("image_size", [(-32, -64), (32, 0), (32,), 32, (32.0, 64)], ids=repr)
def test_fourcastnet_image_size_must_be_two_positive_integers(image_size):
    with pytest.raises(ValueError, match=r"`image_size` \(--image-size\) must be two positive integers, height and "
                                         r"width, got "):
        convert_fourcastnet_checkpoint(FIXTURES / "afno_fourcastnet" / "state_dict.safetensors", image_size=image_size)
