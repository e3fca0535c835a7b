"""Convert an original AFNO checkpoint into a `save_pretrained` directory:

- the AFNO-transformer image classifier (NVlabs/AFNO-transformer, `classification/afnonet.py` `AFNONet` with
  `afno/afno2d.py` `AFNO2D` filters) -> `AFNOForImageClassification` (`AFNOModel` for a checkpoint without a head,
  which the original builds with `num_classes=0`) plus, for a 3-channel (RGB) checkpoint, its image processor;
- FourCastNet's AFNO (NVlabs/FourCastNet, `networks/afnonet.py` `AFNONet`, checkpoints with a `model_state` entry
  and `module.` prefixes) -> `AFNOForPatchRegression`, without an image processor (its inputs are normalised weather
  fields, not images).

    python scripts/convert_original_afno.py afno.pth OUTPUT_DIR [--hard-thresholding-fraction 1.0]
        [--sparsity-threshold 0.01] [--double-skip] [--labels imagenet_classes.txt]
    python scripts/convert_original_afno.py fourcastnet.tar OUTPUT_DIR --fourcastnet --image-size 720 1440

The checkpoint tells widths, depth, patch size, blocks and classes (or output channels); what it cannot tell
comes from the options, with the defaults of the original code (fraction 1, threshold 0.01; double skip off
for the AFNO-transformer training script, on for FourCastNet; FourCastNet's image size 720 x 1440). A checkpoint
whose keys or tensors do not have the original structure is refused with an error naming what differs. A model saved
without an image processor takes its pixel_values as they are (batch, channels, height, width), and the script says
so.
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
    class_names,
    classifier_or_backbone,
    count_modules,
    has_head,
    load_converted_state_dict,
    load_original_state_dict,
    name_classes,
    positive_int,
    require_keys,
    run_command_line,
    save_converted,
)

from fourierformers import AFNOConfig, AFNOForImageClassification, AFNOForPatchRegression, AFNOModel  # noqa: E402
from fourierformers.atomic_directory import check_output_dir  # noqa: E402

FOURCASTNET_IMAGE_SIZE = (720, 1440)  # not stored in its checkpoints
REQUIRED_KEYS = ["patch_embed.proj.weight", "pos_embed", "blocks.0.filter.w1", "blocks.0.mlp.fc1.weight"]
BLOCK_PARAMETERS = (
    "norm1.weight", "norm1.bias", "filter.w1", "filter.b1", "filter.w2", "filter.b2", "norm2.weight", "norm2.bias",
    "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias",
)
SIZES_FROM = (
    "the shapes of patch_embed.proj.weight, pos_embed, blocks.0.filter.w1, blocks.0.mlp.fc1.weight and head.weight"
)
BLOCK_RENAMES = {"norm1": "mixer_norm", "norm2": "mlp_norm", "filter": "mixer"}


def check_fraction(hard_thresholding_fraction):
    if not isinstance(hard_thresholding_fraction, (int, float)) or not 0 < hard_thresholding_fraction <= 1:
        raise ValueError(
            f"`hard_thresholding_fraction` (--hard-thresholding-fraction) must be a number in (0, 1], got "
            f"{hard_thresholding_fraction!r}."
        )


def afno_transformer_kept_modes(grid_shape, hard_thresholding_fraction):
    """The frequencies AFNO2D of the AFNO-transformer processes: all rows, and the first
    `int((N // 2 + 1) * fraction)` rfft columns, N = H * W the token count (not the width). None per axis = all."""
    check_fraction(hard_thresholding_fraction)
    height, width = grid_shape
    kept = int((height * width // 2 + 1) * hard_thresholding_fraction)
    if kept < 1:
        raise ValueError(f"hard_thresholding_fraction={hard_thresholding_fraction} keeps no frequency.")
    columns = None if kept >= width // 2 + 1 else list(range(kept))
    return None if columns is None else [None, columns]


def fourcastnet_kept_modes(grid_shape, hard_thresholding_fraction):
    """The frequencies FourCastNet's AFNO2D processes: with total = H // 2 + 1 and kept = int(total * fraction),
    rows [total - kept, total + kept) clamped to [0, H) and rfft columns [0, kept). Even at fraction 1 the
    columns past H // 2 are dropped when W > H."""
    check_fraction(hard_thresholding_fraction)
    height, width = grid_shape
    total = height // 2 + 1
    kept = int(total * hard_thresholding_fraction)
    if kept < 1:
        raise ValueError(f"hard_thresholding_fraction={hard_thresholding_fraction} keeps no frequency.")
    rows = list(range(max(0, total - kept), min(height, total + kept)))
    columns = list(range(min(kept, width // 2 + 1)))
    return [None if len(rows) == height else rows, None if len(columns) == width // 2 + 1 else columns]


def check_checkpoint(state_dict, fourcastnet):
    """The number of blocks of an original AFNO-transformer or FourCastNet checkpoint, after checking that it has
    exactly the original keys (blocks numbered from 0 without gaps) and that the tensors that sizes are read from have
    the original number of axes."""
    architecture = "FourCastNet AFNO" if fourcastnet else "AFNO-transformer"
    num_layers = count_modules(state_dict, "blocks.", architecture)
    if fourcastnet:  # a bias-free per-token projection to out_chans values per patch pixel
        head_keys, head_axes = ["head.weight"], ("out_chans * patch_size * patch_size", "hidden_size")
    elif has_head(state_dict):
        head_keys, head_axes = ["head.weight", "head.bias"], ("num_classes", "hidden_size")
    else:
        head_keys, head_axes = [], None
    keys = ["patch_embed.proj.weight", "patch_embed.proj.bias", "pos_embed"]
    keys += [f"blocks.{i}.{name}" for i in range(num_layers) for name in BLOCK_PARAMETERS]
    keys += ["norm.weight", "norm.bias", *head_keys]
    layout = (
        f"With its {num_layers} blocks it would hold patch_embed.proj.{{weight,bias}}, pos_embed, "
        f"blocks.I.{{{', '.join(BLOCK_PARAMETERS)}}} for I = 0 to {num_layers - 1}, norm.{{weight,bias}}"
        + (f" and {' and '.join(head_keys)}." if head_keys else " (no head: num_classes=0).")
    )
    check_keys(state_dict, keys, architecture, layout)
    check_tensor_shapes(
        state_dict,
        {
            "patch_embed.proj.weight": ("hidden_size", "in_chans", "patch_size", "patch_size"),
            "pos_embed": (1, "num_patches", "hidden_size"),
            "blocks.0.filter.w1": (2, "num_blocks", "block_size", "block_size * hidden_size_factor"),
            "blocks.0.mlp.fc1.weight": ("mlp_ratio * hidden_size", "hidden_size"),
            **({"head.weight": head_axes} if head_keys else {}),
        },
        architecture,
    )
    return num_layers


def afno_block_fields(state_dict, num_layers, double_skip, sparsity_threshold):
    """The config fields that both original AFNO checkpoints (AFNO-transformer, FourCastNet) share: patch embedding
    and block sizes read from the tensors, and the blocks' fixed settings (pre-norm, GELU, LayerNorm eps 1e-6)."""
    hidden_size, num_channels, patch_size, _ = state_dict["patch_embed.proj.weight"].shape
    _, num_blocks, block_size, inner = state_dict["blocks.0.filter.w1"].shape
    return dict(
        patch_size=patch_size,
        num_channels=num_channels,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        intermediate_size=state_dict["blocks.0.mlp.fc1.weight"].shape[0],
        hidden_act="gelu",
        layer_norm_eps=1e-6,
        norm_first=True,
        mixer_residual=double_skip,
        afno_num_blocks=num_blocks,
        afno_hidden_size_factor=inner // block_size,
        afno_sparsity_threshold=sparsity_threshold,
    )


def config_from_checkpoint(
    state_dict, hard_thresholding_fraction=1.0, sparsity_threshold=0.01, double_skip=False, drop_path_rate=0.0
):
    """The `AFNOConfig` of an original AFNO-transformer checkpoint and the given options."""
    require_keys(state_dict, REQUIRED_KEYS, "AFNO-transformer")
    if "head.bias" not in state_dict and "head.weight" in state_dict:
        raise ValueError(
            "This checkpoint's head has no bias, as FourCastNet's per-patch projection: convert it with "
            "`--fourcastnet` (and its `--image-size`); an AFNO-transformer classifier has head.weight and head.bias."
        )
    num_layers = check_checkpoint(state_dict, fourcastnet=False)
    patch_size = state_dict["patch_embed.proj.weight"].shape[2]
    num_tokens = state_dict["pos_embed"].shape[1]
    grid_side = math.isqrt(num_tokens)
    if grid_side**2 != num_tokens:
        raise ValueError(f"pos_embed has {num_tokens} tokens; the AFNO-transformer classifier uses square grids.")
    return AFNOConfig(
        **afno_block_fields(state_dict, num_layers, double_skip, sparsity_threshold),
        image_size=grid_side * patch_size,
        afno_kept_modes=afno_transformer_kept_modes((grid_side, grid_side), hard_thresholding_fraction),
        pooling="mean",
        hidden_dropout_prob=0.0,
        drop_path_rate=drop_path_rate,
        **({"num_labels": state_dict["head.weight"].shape[0]} if has_head(state_dict) else {}),
    )


def fourcastnet_config_from_checkpoint(
    state_dict, image_size=FOURCASTNET_IMAGE_SIZE, hard_thresholding_fraction=1.0, sparsity_threshold=0.01,
    double_skip=True,
):
    """The `AFNOConfig` of an original FourCastNet checkpoint; the image size is not stored in it."""
    if not (isinstance(image_size, (tuple, list)) and len(image_size) == 2
            and all(isinstance(size, int) and size > 0 for size in image_size)):
        raise ValueError(
            f"`image_size` (--image-size) must be two positive integers, height and width, got {image_size!r}."
        )
    require_keys(state_dict, [*REQUIRED_KEYS, "head.weight"], "FourCastNet AFNO")
    if "head.bias" in state_dict:
        raise ValueError("This checkpoint's head has a bias: it is an AFNO-transformer classifier, not FourCastNet.")
    num_layers = check_checkpoint(state_dict, fourcastnet=True)
    patch_size = state_dict["patch_embed.proj.weight"].shape[2]
    grid = (image_size[0] // patch_size, image_size[1] // patch_size)
    if grid[0] * grid[1] != state_dict["pos_embed"].shape[1]:
        raise ValueError(
            f"image_size {tuple(image_size)} with patch {patch_size} gives {grid[0] * grid[1]} tokens but pos_embed "
            f"has {state_dict['pos_embed'].shape[1]}: pass the image size the model was trained at."
        )
    return AFNOConfig(
        **afno_block_fields(state_dict, num_layers, double_skip, sparsity_threshold),
        image_size=list(image_size),
        final_layer_norm=False,
        afno_kept_modes=fourcastnet_kept_modes(grid, hard_thresholding_fraction),
        hidden_dropout_prob=0.0,
        num_output_channels=state_dict["head.weight"].shape[0] // patch_size**2,
    )


def checkpoint_filter_fn(state_dict, config):
    """Rename (and reshape) the original tensors to `AFNOForImageClassification` keys, or to
    `AFNOForPatchRegression` keys for a FourCastNet config (whose `norm`, built but never applied, is dropped)."""
    regression = config.num_output_channels is not None
    converted = {}
    for key, value in state_dict.items():
        if key == "pos_embed":
            converted["afno.embeddings.position_embeddings"] = value.reshape(1, *config.grid_shape, value.shape[-1])
        elif key.startswith("patch_embed.proj."):
            converted["afno.embeddings.patch_embeddings.projection." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("blocks."):
            layer, module, rest = re.match(r"blocks\.(\d+)\.([^.]+)\.(.+)$", key).groups()
            converted[f"afno.layers.{layer}.{BLOCK_RENAMES.get(module, module)}.{rest}"] = value
        elif key.startswith("norm."):
            if not regression:
                converted["afno." + key] = value
        elif key.startswith("head."):
            converted[key if regression else "classifier." + key.split(".", 1)[1]] = value
        else:
            raise ValueError(f"Unexpected key {key!r} in an original AFNO checkpoint.")
    return converted


def convert_afno_checkpoint(checkpoint_path, **options):
    """An eval-mode `AFNOForImageClassification` (`AFNOModel` for a checkpoint without a head) holding the
    checkpoint's weights; `options` are those of `config_from_checkpoint`."""
    state_dict = load_original_state_dict(checkpoint_path)
    config = config_from_checkpoint(state_dict, **options)
    converted = checkpoint_filter_fn(state_dict, config)
    model, converted = classifier_or_backbone(state_dict, config, converted, AFNOForImageClassification, AFNOModel)
    return load_converted_state_dict(model, converted, state_dict, SIZES_FROM).eval()


def convert_fourcastnet_checkpoint(checkpoint_path, **options):
    """An eval-mode `AFNOForPatchRegression` holding a FourCastNet checkpoint's weights; `options` are those of
    `fourcastnet_config_from_checkpoint`."""
    state_dict = load_original_state_dict(checkpoint_path)
    config = fourcastnet_config_from_checkpoint(state_dict, **options)
    converted = checkpoint_filter_fn(state_dict, config)
    used = [key for key in state_dict if not key.startswith("norm.")]
    return load_converted_state_dict(AFNOForPatchRegression(config), converted, used, SIZES_FROM).eval()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="original checkpoint: .pth (dict with 'model') or .safetensors")
    parser.add_argument("output_dir", help="directory for save_pretrained")
    parser.add_argument("--hard-thresholding-fraction", type=float, default=1.0)
    parser.add_argument("--sparsity-threshold", type=float, default=0.01)
    parser.add_argument("--double-skip", action="store_true", help="the model was trained with --double-skip")
    parser.add_argument("--drop-path-rate", type=float, default=0.0, help="stochastic depth for fine-tuning")
    parser.add_argument("--fourcastnet", action="store_true", help="a FourCastNet checkpoint (double skip on)")
    parser.add_argument("--image-size", type=positive_int, nargs=2, metavar=("HEIGHT", "WIDTH"),
                        help="with --fourcastnet: its training image size (default 720 1440)")
    parser.add_argument("--labels", type=class_names, metavar="FILE",
                        help="class names, one per line in the order of the head's outputs (default LABEL_k)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace output_dir even if it is not empty and holds no saved model")
    args = parser.parse_args(argv)
    # Flags that do not apply are refused rather than ignored.
    if args.fourcastnet and (args.double_skip or args.drop_path_rate):
        parser.error("--double-skip and --drop-path-rate are for AFNO checkpoints; FourCastNet's always has the double "
                     "skip and converts without stochastic depth.")
    if args.fourcastnet and args.labels is not None:
        parser.error("--labels names the classes of an image classifier; FourCastNet's model predicts fields.")
    if not args.fourcastnet and args.image_size is not None:
        parser.error("--image-size is FourCastNet's training image size (with --fourcastnet); an AFNO checkpoint's "
                     "image size comes from its position embeddings.")
    check_output_dir(args.output_dir, args.overwrite, overwrite_option="--overwrite", inputs=[args.input])
    options = dict(
        hard_thresholding_fraction=args.hard_thresholding_fraction, sparsity_threshold=args.sparsity_threshold
    )
    if args.fourcastnet:
        image_size = tuple(args.image_size or FOURCASTNET_IMAGE_SIZE)
        model = convert_fourcastnet_checkpoint(args.input, image_size=image_size, **options)
    else:
        model = convert_afno_checkpoint(
            args.input, double_skip=args.double_skip, drop_path_rate=args.drop_path_rate, **options
        )
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
