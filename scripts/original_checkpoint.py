"""Helpers shared by the converters of original checkpoints: read a checkpoint file in any of its released
formats, check that its keys and tensors have the original model's structure, load a converted state dict with key
and shape checks, and save a model (with an image processor where one fits) into its output directory all at once
(`fourierformers.atomic_directory`)."""

import argparse
import re
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import CLIPImageProcessorPil
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling

from fourierformers.atomic_directory import atomic_directory

STATE_DICT_ENTRIES = ("model", "model_state", "state_dict")
CHECKPOINT_FORMATS = "a torch.save file (.pth, .pt, .tar) or a .safetensors file"
OUR_PREFIXES = ("gfnet.", "afno.", "fnet_hybrid.")
BICUBIC = PILImageResampling.BICUBIC


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
    if path.suffix != ".safetensors" and not is_torch_save_file(path):
        raise ValueError(
            f"{path} is not a checkpoint file: torch.save writes a zip archive (a pickle or a tar file in old "
            f"versions), and this file is none of them. Pass {CHECKPOINT_FORMATS}."
        )
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        # Training checkpoints of the originals (DeiT's training loop) keep their argparse options beside the weights.
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        message = str(error)
        if len(message) > 600:  # torch's unpickling errors name the offending type at the end
            message = f"{message[:300]} [...] {message[-300:]}"
        raise ValueError(
            f"Cannot read {path} as {CHECKPOINT_FORMATS} ({type(error).__name__}: {message}): the file is "
            "truncated, of another format, or (for torch.load) holds Python objects other than tensors; in that "
            "case load it yourself and torch.save only its state dict."
        ) from error


def is_torch_save_file(path):
    """Whether `path` starts as a `torch.save` file does: a zip archive (torch >= 1.6), a pickle (protocol 2 and
    up, the legacy format) or a tar archive (the oldest)."""
    with open(path, "rb") as handle:
        head = handle.read(262)
    return head.startswith((b"PK\x03\x04", b"\x80")) or head[257:262] == b"ustar"


def run_command_line(main):
    """Runs a converter's `main()` as a command: a refusal (`ValueError`, `OSError`: a checkpoint of another model,
    a missing or unreadable file, a bad option or output folder) ends it with its message and status 1, not a
    traceback."""
    try:
        main()
    except (ValueError, OSError) as error:
        sys.exit(f"{Path(sys.argv[0]).name}: error: {error}")


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
        entry = next((name for name in STATE_DICT_ENTRIES if isinstance(checkpoint.get(name), dict)), None)
        state_dict = checkpoint[entry] if entry is not None else checkpoint
    not_tensors = [key for key, value in state_dict.items() if not torch.is_tensor(value)]
    if not_tensors:
        raise ValueError(
            f"{path} is not a model state dict: entries {not_tensors[:5]} are not tensors (a checkpoint dict "
            f"must keep the weights under one of {list(STATE_DICT_ENTRIES)})."
        )
    return {key.removeprefix("module."): value for key, value in state_dict.items()}


def has_head(state_dict):
    """Whether an original image classifier's checkpoint has its head (the originals build none with
    `num_classes=0`)."""
    return "head.weight" in state_dict or "head.bias" in state_dict


def classifier_or_backbone(state_dict, config, converted, classifier_class, backbone_class):
    """The model to load the `converted` tensors of an original checkpoint into, and those tensors: the classifier,
    or for a checkpoint without a head the backbone, whose keys have no prefix (its `pooler_output` is the
    original's `forward_features`)."""
    if has_head(state_dict):
        return classifier_class(config), converted
    prefix = f"{backbone_class.base_model_prefix}."
    return backbone_class(config), {key.removeprefix(prefix): value for key, value in converted.items()}


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


def listed(keys, limit=8):
    """`keys` for an error message: the first `limit` of them, and how many more there are."""
    return f"{keys[:limit]}" + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "")


def module_numbers(state_dict, prefix):
    """The sorted numbers N of the modules `{prefix}N.` (the entries of an `nn.ModuleList`) that hold keys."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(match[1]) for key in state_dict if (match := pattern.match(key))})


def count_modules(state_dict, prefix, architecture):
    """How many modules `{prefix}0.` to `{prefix}{n - 1}.` the checkpoint holds, insisting on the numbering an
    `nn.ModuleList` gives them: from 0, without gaps (a gap means lost or renamed tensors)."""
    numbers = module_numbers(state_dict, prefix)
    if numbers != list(range(len(numbers))):
        raise ValueError(
            f"The modules {prefix}N of an original {architecture} checkpoint are numbered N = 0, 1, 2, ... without "
            f"gaps; this checkpoint has N = {numbers}."
        )
    return len(numbers)


def check_keys(state_dict, expected_keys, architecture, layout):
    """Raise a clear error naming the missing and unexpected keys unless the checkpoint has exactly `expected_keys`,
    the keys of the original `architecture` model that the sentence `layout` describes."""
    missing = [key for key in expected_keys if key not in state_dict]
    unexpected = sorted(set(state_dict) - set(expected_keys))
    if missing or unexpected:
        differences = [f"{name} {listed(keys)}" for name, keys in [("missing", missing), ("unexpected", unexpected)]
                       if keys]
        raise ValueError(
            f"This checkpoint's keys are not those of an original {architecture} checkpoint: "
            f"{', '.join(differences)}. {layout}"
        )


def check_tensor_shapes(state_dict, axes_of_key, architecture):
    """Raise a clear error when a tensor that sizes are read from has another number of axes than `axes_of_key`
    names for it, or another size where it names a number, before any size is read."""
    for key, axes in axes_of_key.items():
        shape = tuple(state_dict[key].shape)
        if len(shape) != len(axes) or any(isinstance(axis, int) and axis != size for axis, size in zip(axes, shape)):
            raise ValueError(
                f"{key} must be a {len(axes)}-D tensor of shape ({', '.join(map(str, axes))}) in an original "
                f"{architecture} checkpoint; in this checkpoint it has shape {shape}."
            )


def load_converted_state_dict(model, state_dict, source_keys, sizes_from):
    """Load `state_dict` (already renamed) into `model`, insisting that both sides match key for key and shape
    for shape, and that every key of the original checkpoint (`source_keys`) was used. `sizes_from` names the
    tensors the model's config was read from, for the error on a tensor that disagrees with them."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        # The converters check the checkpoint's own keys first (`check_keys`), so only their renaming can get here.
        raise ValueError(
            f"The converted tensors do not match the model built for them: missing {listed(missing)}, unexpected "
            f"{listed(unexpected)}. The checkpoint's keys are those of the original model, so this is a converter bug."
        )
    for key, value in state_dict.items():
        if value.shape != expected[key].shape:
            raise ValueError(
                f"Shape mismatch for {key}: checkpoint {tuple(value.shape)}, model {tuple(expected[key].shape)}. "
                f"The model's sizes were read from {sizes_from}, and this tensor of the checkpoint disagrees with them."
            )
    if len(source_keys) != len(state_dict):
        raise ValueError(f"{len(source_keys)} checkpoint tensors became {len(state_dict)}: some were not converted.")
    model.load_state_dict(state_dict, strict=True)
    return model


def positive_int(text):
    """argparse type of the image size options: argparse names the option in the error."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def class_names(path):
    """argparse type of `--labels`: the class names in the text file `path`, one per line in the order of the head's
    outputs (blank lines at the end ignored). A name may repeat, as in ImageNet-1k's ("crane" the bird and the
    machine): pipelines report `id2label`, and `label2id` keeps the last index of such a name, as transformers'
    configs do."""
    try:  # utf-8-sig: a byte-order mark is not part of the first name
        names = [line.strip() for line in Path(path).read_text(encoding="utf-8-sig").splitlines()]
    except (OSError, UnicodeDecodeError) as error:
        raise argparse.ArgumentTypeError(f"cannot read {path!r}: {error}") from error
    while names and not names[-1]:
        names.pop()
    if not names or "" in names:
        raise argparse.ArgumentTypeError(f"{path!r} must hold one class name per line, with no blank line between")
    return names


def name_classes(model, names):
    """Name the outputs of a converted classifier (`id2label`, `label2id`), which pipelines then report instead of
    LABEL_0, LABEL_1, ...; a `ValueError` where the checkpoint has no head or another number of classes."""
    classifier = getattr(model, "classifier", None)
    if classifier is None:
        raise ValueError("--labels names the classes of a classification head; this checkpoint has none.")
    if len(names) != classifier.out_features:
        raise ValueError(
            f"--labels gives {len(names)} class names; the checkpoint's head has {classifier.out_features} classes "
            "(one name per line, in the order of its outputs)."
        )
    model.config.id2label = dict(enumerate(names))
    model.config.label2id = {name: index for index, name in enumerate(names)}


def height_and_width(config):
    """A 2-D model's `image_size` as (height, width)."""
    return (config.image_size, config.image_size) if isinstance(config.image_size, int) else config.image_size


def image_processor_for(config):
    """The image processor of the originals' evaluation (GFNet's and AFNO's `build_transform`, from DeiT): RGB, the
    shorter side resized to 256/224 of the image size (bicubic), the centre cropped to `image_size`, ImageNet
    normalisation. Images of 32 pixels or less were not resized (CIFAR): they are resized to `image_size`."""
    height, width = height_and_width(config)
    common = dict(do_convert_rgb=True, do_resize=True, resample=BICUBIC, image_mean=list(IMAGENET_DEFAULT_MEAN),
                  image_std=list(IMAGENET_DEFAULT_STD))
    if max(height, width) <= 32:
        return CLIPImageProcessorPil(**common, size={"height": height, "width": width}, do_center_crop=False)
    return CLIPImageProcessorPil(
        **common, size={"shortest_edge": int(256 / 224 * max(height, width))}, do_center_crop=True,
        crop_size={"height": height, "width": width},
    )


def no_image_processor_note(config):
    """Why a converted model gets no image processor, with what to give it instead; None when it gets one. The image
    processor makes 3-channel RGB images with ImageNet normalisation (and `pipeline()` converts every image to RGB),
    which fits only an RGB image classifier: not a checkpoint with another channel count, nor FourCastNet's
    normalised weather fields."""
    if config.num_output_channels is not None:
        reason = (f"a patch regression model (FourCastNet) takes {config.num_channels} channels of normalised "
                  "physical fields, not RGB images")
    elif config.num_channels != 3:
        reason = (f"the checkpoint's patch embedding takes {config.num_channels}-channel inputs, while an image "
                  "processor (and pipeline()) makes 3-channel RGB images")
    else:
        return None
    height, width = height_and_width(config)
    return (f"No image processor saved: {reason}. Give the model pixel_values of shape "
            f"(batch, {config.num_channels}, {height}, {width}), normalised as in training.")


def save_converted(model, output_dir, overwrite=False):
    """`save_pretrained` the model and, for an RGB image classifier, its image processor, so that pipelines load from
    the dir; returns `no_image_processor_note` (None when the image processor was saved). Both are written to a work
    directory first and moved to `output_dir` together (`atomic_directory`): an error leaves `output_dir` as it
    was."""
    note = no_image_processor_note(model.config)
    with atomic_directory(output_dir, overwrite, overwrite_option="--overwrite") as work_dir:
        model.save_pretrained(work_dir)
        if note is None:
            image_processor_for(model.config).save_pretrained(work_dir)
    return note
