"""Converters of original GFNet, GFNet-H and AFNO-transformer checkpoints against the reference fixtures, the
checkpoint file formats they accept, and their errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoImageProcessor, AutoModelForImageClassification

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))

from conftest import SHARED  # noqa: E402
from convert_original_afno import convert_afno_checkpoint, convert_fourcastnet_checkpoint  # noqa: E402
from convert_original_gfnet import convert_gfnet_checkpoint  # noqa: E402

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
    torch.testing.assert_close(outputs.last_hidden_state, reference["features"], atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="pos_embed has 128"):
        convert_fourcastnet_checkpoint(tmp_path / "ckpt.tar", image_size=(64, 64))
    with pytest.raises(ValueError, match="not FourCastNet"):
        convert_fourcastnet_checkpoint(FIXTURES / "afno" / "state_dict.safetensors", image_size=(32, 32))


@pytest.mark.shared
def test_afno_trunc_mode_region_matters():
    """Converting afno_trunc without its fraction gives other logits: the truncation is really exercised."""
    model = convert_afno_checkpoint(FIXTURES / "afno_trunc" / "state_dict.safetensors")
    pixel_values = load_file(FIXTURES / "afno_trunc" / "inputs.safetensors")["pixel_values"]
    reference = load_file(FIXTURES / "afno_trunc" / "outputs.safetensors")["logits"]
    with torch.no_grad():
        assert (model(pixel_values=pixel_values).logits - reference).abs().max() > 1e-2


@pytest.mark.shared
@pytest.mark.parametrize("layout", ["model", "model_state_module_prefix", "plain"])
def test_pth_checkpoint_layouts(tmp_path, layout):
    state_dict = load_file(FIXTURES / "gfnet" / "state_dict.safetensors")
    if layout == "model":
        checkpoint = {"model": state_dict, "epoch": torch.tensor(3)}
    elif layout == "model_state_module_prefix":
        checkpoint = {"model_state": {"module." + key: value for key, value in state_dict.items()}}
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
    command = [sys.executable, str(SCRIPTS / "convert_original_afno.py"), str(FIXTURES / name / "state_dict.safetensors"),
               str(tmp_path / "converted"), "--hard-thresholding-fraction", "0.1"]
    subprocess.run(command, check=True, capture_output=True)
    model = AutoModelForImageClassification.from_pretrained(tmp_path / "converted").eval()
    assert AutoImageProcessor.from_pretrained(tmp_path / "converted").size == {"height": 32, "width": 32}
    pixel_values = load_file(FIXTURES / name / "inputs.safetensors")["pixel_values"]
    reference = load_file(FIXTURES / name / "outputs.safetensors")["logits"]
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values=pixel_values).logits, reference, atol=1e-4, rtol=0)
