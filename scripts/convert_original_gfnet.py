"""Convert an original GFNet or GFNet-H checkpoint (raoyongming/GFNet, `gfnet.py` classes `GFNet` and
`GFNetPyramid`) into a `GFNetForImageClassification` directory with its image processor.

    python scripts/convert_original_gfnet.py gfnet-xs.pth OUTPUT_DIR [--image-size 384] [--drop-path-rate 0.1]

The checkpoint tells the architecture (widths, depths, patch size, classes, LayerScale); `--image-size`
resizes position embeddings and filters to another resolution (bicubic, as the original fine-tuning does).
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

from fourierformers import GFNetConfig, GFNetForImageClassification  # noqa: E402
from fourierformers.atomic_directory import check_output_dir  # noqa: E402
from fourierformers.patch_embedding import resize_model_to_image_size  # noqa: E402

BLOCK_RENAMES = {
    "norm1": "mixer_norm",
    "norm2": "mlp_norm",
    "filter.complex_weight": "mixer.complex_weight",
    "gamma": "mlp_layer_scale.gamma",
}


def is_pyramid(state_dict):
    """GFNet-H (`GFNetPyramid`) keeps a list of patch embeddings and one block list per stage."""
    return "patch_embed.0.proj.weight" in state_dict


def config_from_checkpoint(state_dict, drop_path_rate=0.0):
    """The `GFNetConfig` of an original checkpoint, read from its tensor shapes."""
    pyramid = is_pyramid(state_dict)
    stem = "patch_embed.0.proj" if pyramid else "patch_embed.proj"
    require_keys(state_dict, [f"{stem}.weight", "pos_embed", "norm.weight", "head.weight"], "GFNet")
    hidden_size, num_channels, patch_size, _ = state_dict[f"{stem}.weight"].shape
    grid_side = math.isqrt(state_dict["pos_embed"].shape[1])
    if grid_side**2 != state_dict["pos_embed"].shape[1]:
        raise ValueError(f"pos_embed has {state_dict['pos_embed'].shape[1]} tokens, not a square grid.")
    if pyramid:
        stage_blocks = {(int(s), int(j)) for s, j in re.findall(r"blocks\.(\d+)\.(\d+)\.", " ".join(state_dict))}
        depths = [sum(1 for s, _ in stage_blocks if s == stage) for stage in range(4)]
        hidden_sizes = [state_dict["patch_embed.0.proj.weight"].shape[0]] + [
            state_dict[f"patch_embed.{stage}.proj.weight"].shape[0] for stage in range(1, 4)
        ]
        first_fc1 = "blocks.0.0.mlp.fc1.weight"
        uses_layer_scale = "blocks.0.0.gamma" in state_dict
    else:
        depths = [len({int(i) for i in re.findall(r"blocks\.(\d+)\.", " ".join(state_dict))})]
        hidden_sizes = [hidden_size]
        first_fc1 = "blocks.0.mlp.fc1.weight"
        uses_layer_scale = "blocks.0.gamma" in state_dict
    require_keys(state_dict, [first_fc1, first_fc1.replace("mlp.fc1.weight", "filter.complex_weight")], "GFNet")
    mlp_ratio = state_dict[first_fc1].shape[0] // hidden_sizes[0]
    return GFNetConfig(
        image_size=grid_side * patch_size,
        patch_size=patch_size,
        num_channels=num_channels,
        hidden_size=hidden_sizes[-1],
        hidden_sizes=hidden_sizes if pyramid else None,
        depths=depths if pyramid else None,
        num_hidden_layers=sum(depths),
        intermediate_size=mlp_ratio * hidden_sizes[-1],
        hidden_act="gelu",
        layer_norm_eps=1e-6,
        norm_first=True,
        mixer_residual=False,
        layer_scale_init_value=1e-5 if uses_layer_scale else None,
        filter_activation="identity",
        pooling="mean",
        hidden_dropout_prob=0.0,
        drop_path_rate=drop_path_rate,
        num_labels=state_dict["head.weight"].shape[0],
    )


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
    """An eval-mode `GFNetForImageClassification` holding the original checkpoint's weights, optionally resized
    to `image_size`."""
    state_dict = load_original_state_dict(checkpoint_path)
    config = config_from_checkpoint(state_dict, drop_path_rate)
    converted = checkpoint_filter_fn(state_dict, config)
    model = load_converted_state_dict(GFNetForImageClassification(config), converted, state_dict)
    if image_size is not None and image_size != config.image_size:
        model = resize_model_to_image_size(model, image_size)
    return model.eval()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", help="original checkpoint: .pth (dict with 'model') or .safetensors")
    parser.add_argument("output_dir", help="directory for save_pretrained")
    parser.add_argument("--image-size", type=int, help="resize filters and position embeddings to this size")
    parser.add_argument("--drop-path-rate", type=float, default=0.0, help="stochastic depth for fine-tuning")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace output_dir even if it is not empty and holds no saved model")
    args = parser.parse_args(argv)
    check_output_dir(args.output_dir, args.overwrite, overwrite_option="--overwrite", inputs=[args.input])
    model = convert_gfnet_checkpoint(args.input, args.image_size, args.drop_path_rate)
    save_converted(model, args.output_dir, args.overwrite)
    print(f"Saved {type(model).__name__} ({model.num_parameters():,} parameters) to {args.output_dir}")


if __name__ == "__main__":
    main()
