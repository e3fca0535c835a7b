"""Helpers shared by the converters of original checkpoints: read a checkpoint file in any of its released
formats, load a converted state dict with key and shape checks, and save a model with its image processor."""

import torch
from safetensors.torch import load_file
from transformers import ViTImageProcessorPil
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

STATE_DICT_ENTRIES = ("model", "model_state", "state_dict")


def load_original_state_dict(path):
    """The state dict in `path`: a safetensors file, a plain `torch.save`d state dict, or a training checkpoint
    dict whose `model` (GFNet, AFNO-transformer), `model_state` (FourCastNet) or `state_dict` entry holds it.
    DDP `module.` prefixes are removed."""
    if str(path).endswith(".safetensors"):
        state_dict = load_file(str(path))
    else:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(checkpoint, dict):
            raise ValueError(f"{path} holds a {type(checkpoint).__name__}, not a state dict or checkpoint dict.")
        entry = next((name for name in STATE_DICT_ENTRIES if name in checkpoint), None)
        state_dict = checkpoint[entry] if entry is not None else checkpoint
    not_tensors = [key for key, value in state_dict.items() if not torch.is_tensor(value)]
    if not_tensors:
        raise ValueError(
            f"{path} is not a model state dict: entries {not_tensors[:5]} are not tensors (a checkpoint dict "
            f"must keep the weights under one of {list(STATE_DICT_ENTRIES)})."
        )
    return {key.removeprefix("module."): value for key, value in state_dict.items()}


def require_keys(state_dict, keys, architecture):
    """Raise a clear error when the checkpoint lacks keys the architecture needs."""
    missing = [key for key in keys if key not in state_dict]
    if missing:
        raise ValueError(
            f"This checkpoint is not an original {architecture} checkpoint: it has no {missing}. "
            f"Its first keys are {sorted(state_dict)[:8]}."
        )


def load_converted_state_dict(model, state_dict, source_keys):
    """Load `state_dict` (already renamed) into `model`, insisting that both sides match key for key and shape
    for shape, and that every key of the original checkpoint (`source_keys`) was used."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"The checkpoint does not match the model built for it: missing {missing[:8]}, unexpected "
            f"{unexpected[:8]}. Check the converter options (depths, double_skip, ...)."
        )
    for key, value in state_dict.items():
        if value.shape != expected[key].shape:
            raise ValueError(
                f"Shape mismatch for {key}: checkpoint {tuple(value.shape)}, model {tuple(expected[key].shape)}; "
                "the config options do not match the checkpoint (image_size, patch_size, ...)."
            )
    if len(source_keys) != len(state_dict):
        raise ValueError(f"{len(source_keys)} checkpoint tensors became {len(state_dict)}: some were not converted.")
    model.load_state_dict(state_dict, strict=True)
    return model


def image_processor_for(config):
    """The ViT image processor matching a converted 2-D model: resize to `image_size`, ImageNet normalisation."""
    height, width = (config.image_size, config.image_size) if isinstance(config.image_size, int) else config.image_size
    return ViTImageProcessorPil(
        do_resize=True,
        size={"height": height, "width": width},
        image_mean=list(IMAGENET_DEFAULT_MEAN),
        image_std=list(IMAGENET_DEFAULT_STD),
    )


def save_converted(model, output_dir):
    """`save_pretrained` the model and, for 2-D models, its image processor, so that pipelines load from the dir."""
    model.save_pretrained(output_dir)
    if model.config.spatial_dims == 2:
        image_processor_for(model.config).save_pretrained(output_dir)
