"""Convert an original AFNO-transformer image classifier (NVlabs/AFNO-transformer, `classification/afnonet.py`
`AFNONet` with `afno/afno2d.py` `AFNO2D` filters) into an `AFNOForImageClassification` directory with its image
processor.

    python scripts/convert_original_afno.py afno.pth OUTPUT_DIR [--hard-thresholding-fraction 1.0]
        [--sparsity-threshold 0.01] [--double-skip]

The checkpoint tells widths, depth, patch size, blocks and classes; what it cannot tell comes from the options,
with the defaults of the original training script (fraction 1, threshold 0.01, no double skip).
"""

import argparse
import math
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from original_checkpoint import (  # noqa: E402
    load_converted_state_dict,
    load_original_state_dict,
    require_keys,
    save_converted,
)

from fourierformers import AFNOConfig, AFNOForImageClassification  # noqa: E402

BLOCK_RENAMES = {"norm1": "mixer_norm", "norm2": "mlp_norm", "filter": "mixer"}


def afno_transformer_kept_modes(grid_shape, hard_thresholding_fraction):
    """The frequencies AFNO2D of the AFNO-transformer processes: all rows, and the first
    `int((N // 2 + 1) * fraction)` rfft columns, N = H * W the token count (not the width). None per axis = all."""
    height, width = grid_shape
    kept = int((height * width // 2 + 1) * hard_thresholding_fraction)
    if kept < 1:
        raise ValueError(f"hard_thresholding_fraction={hard_thresholding_fraction} keeps no frequency.")
    columns = None if kept >= width // 2 + 1 else list(range(kept))
    return None if columns is None else [None, columns]


def config_from_checkpoint(
    state_dict, hard_thresholding_fraction=1.0, sparsity_threshold=0.01, double_skip=False, drop_path_rate=0.0
):
    """The `AFNOConfig` of an original AFNO-transformer checkpoint and the given options."""
    require_keys(
        state_dict,
        ["patch_embed.proj.weight", "pos_embed", "blocks.0.filter.w1", "blocks.0.mlp.fc1.weight", "head.weight"],
        "AFNO-transformer",
    )
    hidden_size, num_channels, patch_size, _ = state_dict["patch_embed.proj.weight"].shape
    num_tokens = state_dict["pos_embed"].shape[1]
    grid_side = math.isqrt(num_tokens)
    if grid_side**2 != num_tokens:
        raise ValueError(f"pos_embed has {num_tokens} tokens; the AFNO-transformer classifier uses square grids.")
    _, num_blocks, block_size, inner = state_dict["blocks.0.filter.w1"].shape
    return AFNOConfig(
        image_size=grid_side * patch_size,
        patch_size=patch_size,
        num_channels=num_channels,
        hidden_size=hidden_size,
        num_hidden_layers=len({int(i) for i in re.findall(r"blocks\.(\d+)\.", " ".join(state_dict))}),
        intermediate_size=state_dict["blocks.0.mlp.fc1.weight"].shape[0],
        hidden_act="gelu",
        layer_norm_eps=1e-6,
        norm_first=True,
        mixer_residual=double_skip,
        afno_num_blocks=num_blocks,
        afno_hidden_size_factor=inner // block_size,
        afno_sparsity_threshold=sparsity_threshold,
        afno_kept_modes=afno_transformer_kept_modes((grid_side, grid_side), hard_thresholding_fraction),
        pooling="mean",
        hidden_dropout_prob=0.0,
        drop_path_rate=drop_path_rate,
        num_labels=state_dict["head.weight"].shape[0],
    )


def checkpoint_filter_fn(state_dict, config):
    """Rename (and reshape) the original tensors to `AFNOForImageClassification` keys."""
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
            converted["afno." + key] = value
        elif key.startswith("head."):
            converted["classifier." + key.split(".", 1)[1]] = value
        else:
            raise ValueError(f"Unexpected key {key!r} in an AFNO-transformer checkpoint.")
    return converted


def convert_afno_checkpoint(checkpoint_path, **options):
    """An eval-mode `AFNOForImageClassification` holding the checkpoint's weights; `options` are those of
    `config_from_checkpoint`."""
    state_dict = load_original_state_dict(checkpoint_path)
    config = config_from_checkpoint(state_dict, **options)
    model = AFNOForImageClassification(config)
    return load_converted_state_dict(model, checkpoint_filter_fn(state_dict, config), state_dict).eval()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="original checkpoint: .pth (dict with 'model') or .safetensors")
    parser.add_argument("output_dir", help="directory for save_pretrained")
    parser.add_argument("--hard-thresholding-fraction", type=float, default=1.0)
    parser.add_argument("--sparsity-threshold", type=float, default=0.01)
    parser.add_argument("--double-skip", action="store_true", help="the model was trained with --double-skip")
    parser.add_argument("--drop-path-rate", type=float, default=0.0, help="stochastic depth for fine-tuning")
    args = parser.parse_args()
    model = convert_afno_checkpoint(
        args.input,
        hard_thresholding_fraction=args.hard_thresholding_fraction,
        sparsity_threshold=args.sparsity_threshold,
        double_skip=args.double_skip,
        drop_path_rate=args.drop_path_rate,
    )
    save_converted(model, args.output_dir)
    print(f"Saved {type(model).__name__} ({model.num_parameters():,} parameters) to {args.output_dir}")


if __name__ == "__main__":
    main()
