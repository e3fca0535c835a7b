"""Convert an original GFNet or GFNet-H checkpoint (raoyongming/GFNet, `gfnet.py` classes `GFNet` and
`GFNetPyramid`) into a `GFNetForImageClassification` directory with its image processor (a `GFNetModel` for a
checkpoint without a head, which the original builds with `num_classes=0`).

    python scripts/convert_original_gfnet.py gfnet-xs.pth OUTPUT_DIR [--image-size 384] [--drop-path-rate 0.1]
        [--labels imagenet_classes.txt]

The checkpoint tells the architecture (widths, depths, patch size, input channels, classes, LayerScale);
`--image-size` resizes position embeddings and filters to another resolution (bicubic, as the original fine-tuning
does). A checkpoint whose keys or tensors do not have the original structure is refused with an error naming what
differs. The image processor (ImageNet normalisation, for pipeline()) is saved only for 3-channel (RGB) checkpoints;
a model with another channel count takes its pixel_values as they are, and the script says so.
"""

import argparse
import math
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from original_checkpoint import (  # noqa: E402
    check_keys,
    check_tensor_shapes,
    classifier_or_backbone,
    count_modules,
    has_head,
    load_converted_state_dict,
    load_original_state_dict,
    class_names,
    module_numbers,
    name_classes,
    positive_int,
    require_keys,
    run_command_line,
    save_converted,
)

from fourierformers import GFNetConfig, GFNetForImageClassification, GFNetModel  # noqa: E402
from fourierformers.atomic_directory import check_output_dir  # noqa: E402
from fourierformers.patch_embedding import resize_model_to_image_size  # noqa: E402

PYRAMID_STAGES = 4  # GFNetPyramid builds its stages in a hard-coded `range(4)` loop
BLOCK_PARAMETERS = (
    "norm1.weight", "norm1.bias", "filter.complex_weight", "norm2.weight", "norm2.bias",
    "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
)
SIZES_FROM = "the shapes of patch_embed, pos_embed, the first block's mlp.fc1.weight and head.weight"
BLOCK_RENAMES = {
    "norm1": "mixer_norm",
    "norm2": "mlp_norm",
    "filter.complex_weight": "mixer.complex_weight",
    "gamma": "mlp_layer_scale.gamma",
}


def is_pyramid(state_dict):
    """GFNet-H (`GFNetPyramid`) keeps a list of patch embeddings and one block list per stage."""
    return "patch_embed.0.proj.weight" in state_dict


def stem_and_first_block(pyramid):
    """The key prefixes of the first patch embedding and of the first block."""
    return ("patch_embed.0.proj", "blocks.0.0") if pyramid else ("patch_embed.proj", "blocks.0")


def checkpoint_depths(state_dict, pyramid):
    """The number of blocks of an original GFNet checkpoint (one entry) or of each stage of a GFNet-H checkpoint,
    insisting on GFNet-H's four stages and on blocks numbered from 0 without gaps."""
    if not pyramid:
        return [count_modules(state_dict, "blocks.", "GFNet")]
    stems, stages = module_numbers(state_dict, "patch_embed."), module_numbers(state_dict, "blocks.")
    if stems != list(range(PYRAMID_STAGES)) or stages != list(range(PYRAMID_STAGES)):
        raise ValueError(
            f"An original GFNet-H checkpoint (GFNetPyramid) has {PYRAMID_STAGES} stages S = 0 to "
            f"{PYRAMID_STAGES - 1}, each with keys patch_embed.S.proj.* and blocks.S.J.*; this checkpoint has "
            f"patch_embed.S for S = {stems} and blocks.S for S = {stages}."
        )
    return [count_modules(state_dict, f"blocks.{stage}.", "GFNet-H") for stage in range(PYRAMID_STAGES)]


def expected_keys(depths, pyramid, uses_layer_scale, has_head):
    """The keys of an original GFNet checkpoint (`depths` of one stage) or GFNet-H checkpoint, with or without its
    classification head, and a sentence describing them for error messages."""
    parameters = BLOCK_PARAMETERS + (("gamma",) if uses_layer_scale else ())
    block_contents = f"{{{', '.join(parameters)}}}"
    if pyramid:
        stems = [f"patch_embed.{stage}.proj" for stage in range(PYRAMID_STAGES)]
        blocks = [f"blocks.{stage}.{j}" for stage, depth in enumerate(depths) for j in range(depth)]
        layout = (
            f"With its depths {depths} (blocks per stage) it would hold patch_embed.S.proj.{{weight,bias}} for S = 0 "
            f"to {PYRAMID_STAGES - 1}, pos_embed, blocks.S.J.{block_contents} for J = 0 to depths[S] - 1"
        )
    else:
        stems = ["patch_embed.proj"]
        blocks = [f"blocks.{i}" for i in range(depths[0])]
        layout = (
            f"With its {depths[0]} blocks it would hold patch_embed.proj.{{weight,bias}}, pos_embed, "
            f"blocks.I.{block_contents} for I = 0 to {depths[0] - 1}"
        )
    keys = [f"{stem}.{name}" for stem in stems for name in ("weight", "bias")] + ["pos_embed"]
    keys += [f"{block}.{name}" for block in blocks for name in parameters]
    keys += ["norm.weight", "norm.bias", *(["head.weight", "head.bias"] if has_head else [])]
    head = " and head.{weight,bias}" if has_head else " (no head: num_classes=0)"
    return keys, layout + f" (LayerScale gamma in every block or in none), norm.{{weight,bias}}{head}."


def check_checkpoint(state_dict, pyramid):
    """The depths of an original GFNet or GFNet-H checkpoint (`checkpoint_depths`), after checking that it has
    exactly the original keys and that the tensors that sizes are read from have the original number of axes."""
    stem, first_block = stem_and_first_block(pyramid)
    require_keys(
        state_dict,
        [f"{stem}.weight", "pos_embed", f"{first_block}.filter.complex_weight", f"{first_block}.mlp.fc1.weight",
         "norm.weight"],
        "GFNet",
    )
    architecture = "GFNet-H" if pyramid else "GFNet"
    depths = checkpoint_depths(state_dict, pyramid)
    keys, layout = expected_keys(depths, pyramid, f"{first_block}.gamma" in state_dict, has_head(state_dict))
    check_keys(state_dict, keys, architecture, layout)
    if pyramid:  # each stage has its own width; GFNet-H downsamples between stages with 2 x 2 patches
        width, last_width = "hidden_size_0", f"hidden_size_{PYRAMID_STAGES - 1}"
        axes_of_key = {
            f"patch_embed.{stage}.proj.weight": (f"hidden_size_{stage}", f"hidden_size_{stage - 1}", 2, 2)
            for stage in range(1, PYRAMID_STAGES)
        }
    else:
        width = last_width = "hidden_size"
        axes_of_key = {}
    axes_of_key.update({
        f"{stem}.weight": (width, "in_chans", "patch_size", "patch_size"),
        "pos_embed": (1, "num_patches", width),
        f"{first_block}.filter.complex_weight": ("h", "w", width, 2),
        f"{first_block}.mlp.fc1.weight": (f"mlp_ratio * {width}", width),
        **({"head.weight": ("num_classes", last_width)} if has_head(state_dict) else {}),
    })
    check_tensor_shapes(state_dict, axes_of_key, architecture)
    return depths


def config_from_checkpoint(state_dict, drop_path_rate=0.0):
    """The `GFNetConfig` of an original checkpoint, read from its tensor shapes."""
    pyramid = is_pyramid(state_dict)
    depths = check_checkpoint(state_dict, pyramid)
    stem, first_block = stem_and_first_block(pyramid)
    hidden_size, num_channels, patch_size, _ = state_dict[f"{stem}.weight"].shape
    grid_side = math.isqrt(state_dict["pos_embed"].shape[1])
    if grid_side**2 != state_dict["pos_embed"].shape[1]:
        raise ValueError(f"pos_embed has {state_dict['pos_embed'].shape[1]} tokens, not a square grid.")
    if pyramid:
        hidden_sizes = [state_dict[f"patch_embed.{stage}.proj.weight"].shape[0] for stage in range(PYRAMID_STAGES)]
    else:
        hidden_sizes = [hidden_size]
    uses_layer_scale = f"{first_block}.gamma" in state_dict
    intermediate_size = intermediate_size_of(state_dict, hidden_sizes, pyramid)
    return GFNetConfig(
        image_size=grid_side * patch_size,
        patch_size=patch_size,
        num_channels=num_channels,
        hidden_size=hidden_sizes[-1],
        hidden_sizes=hidden_sizes if pyramid else None,
        depths=depths if pyramid else None,
        num_hidden_layers=sum(depths),
        intermediate_size=intermediate_size,
        hidden_act="gelu",
        layer_norm_eps=1e-6,
        norm_first=True,
        mixer_residual=False,
        layer_scale_init_value=1e-5 if uses_layer_scale else None,
        filter_activation="identity",
        pooling="mean",
        hidden_dropout_prob=0.0,
        drop_path_rate=drop_path_rate,
        **({"num_labels": state_dict["head.weight"].shape[0]} if has_head(state_dict) else {}),
    )


def intermediate_size_of(state_dict, hidden_sizes, pyramid):
    """The MLP width of the (last) stage, which is `intermediate_size`: the original's `int(width * mlp_ratio)`
    (any ratio, 2.5 included). GFNet-H stages get `intermediate_size * width // hidden_size` here, one ratio for all
    stages; a checkpoint with a ratio per stage is refused by name."""
    first_blocks = [f"blocks.{stage}.0" for stage in range(PYRAMID_STAGES)] if pyramid else ["blocks.0"]
    widths = [state_dict[f"{block}.mlp.fc1.weight"].shape[0] for block in first_blocks]
    intermediate_size = widths[-1]
    if widths != [intermediate_size * hidden // hidden_sizes[-1] for hidden in hidden_sizes]:
        raise ValueError(
            f"This GFNet-H checkpoint has MLP widths {widths} for stage widths {hidden_sizes}, a different MLP ratio "
            "per stage; GFNetConfig gives every stage the ratio intermediate_size / hidden_size, so it cannot be "
            "converted."
        )
    return intermediate_size


def checkpoint_filter_fn(state_dict, config):
    """Rename (and reshape) the original tensors to `GFNetForImageClassification` keys."""
    grid = config.grid_shape
    layer_of_block = {}
    for stage, start in enumerate([sum(config.stage_depths[:s]) for s in range(len(config.stage_depths))]):
        for j in range(config.stage_depths[stage]):
            layer_of_block[f"{stage}.{j}" if config.depths is not None else f"{j}"] = start + j
    converted = {}
    for key, value in state_dict.items():
        if key == "pos_embed":
            converted["gfnet.embeddings.position_embeddings"] = value.reshape(1, *grid, value.shape[-1])
        elif key.startswith(("patch_embed.proj.", "patch_embed.0.proj.")):
            converted["gfnet.embeddings.patch_embeddings.projection." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("patch_embed."):
            stage = int(key.split(".")[1])
            converted[f"gfnet.downsamples.{stage - 1}.projection." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("blocks."):
            block_pattern = r"blocks\.(\d+)\.(.+)$" if config.depths is None else r"blocks\.(\d+\.\d+)\.(.+)$"
            block, rest = re.match(block_pattern, key).groups()
            for old, new in BLOCK_RENAMES.items():
                if rest == old or rest.startswith(old + "."):
                    rest = new + rest[len(old):]
                    break
            converted[f"gfnet.layers.{layer_of_block[block]}.{rest}"] = value
        elif key.startswith("norm."):
            converted["gfnet." + key] = value
        elif key.startswith("head."):
            converted["classifier." + key.split(".", 1)[1]] = value
        else:
            raise ValueError(f"Unexpected key {key!r} in a GFNet checkpoint.")
    return converted


def convert_gfnet_checkpoint(checkpoint_path, image_size=None, drop_path_rate=0.0):
    """An eval-mode `GFNetForImageClassification` (`GFNetModel` for a checkpoint without a head) holding the
    original checkpoint's weights, optionally resized to `image_size`."""
    state_dict = load_original_state_dict(checkpoint_path)
    config = config_from_checkpoint(state_dict, drop_path_rate)
    converted = checkpoint_filter_fn(state_dict, config)
    model, converted = classifier_or_backbone(state_dict, config, converted, GFNetForImageClassification, GFNetModel)
    model = load_converted_state_dict(model, converted, state_dict, SIZES_FROM)
    if image_size is not None and image_size != config.image_size:
        model = resize_model_to_image_size(model, image_size)
    return model.eval()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="original checkpoint: .pth (dict with 'model') or .safetensors")
    parser.add_argument("output_dir", help="directory for save_pretrained")
    parser.add_argument("--image-size", type=positive_int,
                        help="resize filters and position embeddings to this size")
    parser.add_argument("--drop-path-rate", type=float, default=0.0, help="stochastic depth for fine-tuning")
    parser.add_argument("--labels", type=class_names, metavar="FILE",
                        help="class names, one per line in the order of the head's outputs (default LABEL_k)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace output_dir even if it is not empty and holds no saved model")
    args = parser.parse_args(argv)
    check_output_dir(args.output_dir, args.overwrite, overwrite_option="--overwrite", inputs=[args.input])
    model = convert_gfnet_checkpoint(args.input, args.image_size, args.drop_path_rate)
    if args.labels is not None:
        try:
            name_classes(model, args.labels)
        except ValueError as error:
            parser.error(str(error))
    note = save_converted(model, args.output_dir, args.overwrite)
    print(f"Saved {type(model).__name__} ({model.num_parameters():,} parameters) to {args.output_dir}")
    if note is not None:
        print(note)


if __name__ == "__main__":
    run_command_line(main)
