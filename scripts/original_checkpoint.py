"""Helpers shared by the converters of original checkpoints: read a checkpoint file in any of its released
formats, load a converted state dict with key and shape checks, and save a model with its image processor into
its output directory all at once (`fourierformers.atomic_directory`)."""

from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import ViTImageProcessorPil
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from fourierformers.atomic_directory import atomic_directory

STATE_DICT_ENTRIES = ("model", "model_state", "state_dict")
CHECKPOINT_FORMATS = "a torch.save file (.pth, .pt, .tar) or a .safetensors file"
OUR_PREFIXES = ("gfnet.", "afno.", "fnet_hybrid.")


def read_checkpoint_file(path):
    """The object stored in the checkpoint file `path` (safetensors: a dict of tensors; else `torch.load` with
    `weights_only=True`), or a clear error for a missing, empty, unreadable or unsafe file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Checkpoint file {path} does not exist; pass {CHECKPOINT_FORMATS}.")
    if path.is_dir():
        raise ValueError(f"{path} is a directory; pass the checkpoint file itself, {CHECKPOINT_FORMATS}.")
    if path.stat().st_size == 0:
        raise ValueError(f"Checkpoint file {path} is empty; pass {CHECKPOINT_FORMATS}.")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"Cannot read {path} as {CHECKPOINT_FORMATS} ({type(error).__name__}: {str(error)[:300]}): the file is "
            "truncated, of another format, or (for torch.load) holds Python objects other than tensors; in that "
            "case load it yourself and torch.save only its state dict."
        ) from error


def load_original_state_dict(path):
    """The state dict in `path`: a safetensors file, a plain `torch.save`d state dict, or a training checkpoint
    dict whose `model` (GFNet, AFNO-transformer), `model_state` (FourCastNet) or `state_dict` entry holds it.
    DDP `module.` prefixes are removed."""
    if Path(path).suffix == ".safetensors":
        state_dict = read_checkpoint_file(path)
    else:
        checkpoint = read_checkpoint_file(path)
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
        hint = ""
        if any(key.startswith(OUR_PREFIXES) for key in state_dict):
            hint = " It is a fourierformers checkpoint already: load its folder with from_pretrained."
        raise ValueError(
            f"This checkpoint is not an original {architecture} checkpoint: it has no {missing}.{hint} "
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


def save_converted(model, output_dir, overwrite=False):
    """`save_pretrained` the model and, for 2-D models, its image processor, so that pipelines load from the dir.
    Both are written to a work directory first and moved to `output_dir` together (`atomic_directory`): an error
    leaves `output_dir` as it was."""
    with atomic_directory(output_dir, overwrite, overwrite_option="--overwrite") as work_dir:
        model.save_pretrained(work_dir)
        if model.config.spatial_dims == 2:
            image_processor_for(model.config).save_pretrained(work_dir)
