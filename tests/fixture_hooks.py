"""`load_converted` hook for `../shared/fixtures/check_fixture.py`: runs this repository's converters on a fixture.

    python ../shared/fixtures/check_fixture.py gfnet_h --loader tests/fixture_hooks.py
"""

import json
import shutil
import sys
import tempfile
from pathlib import Path

from transformers import FNetConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from convert_original_afno import convert_afno_checkpoint, convert_fourcastnet_checkpoint  # noqa: E402
from convert_original_gfnet import convert_gfnet_checkpoint  # noqa: E402
from convert_transformers_fnet import convert_fnet_checkpoint  # noqa: E402


def load_converted(fixture_dir):
    """The converted model of a fixture as a callable from its inputs to every output the fixture holds: vision
    fixtures give {"logits"/"output", "features"}, the FNet fixture its logits, pooler output and hidden states."""
    fixture_dir = Path(fixture_dir)
    config = json.loads((fixture_dir / "config.json").read_text())
    checkpoint = fixture_dir / "state_dict.safetensors"
    source = config["source"]
    if source.startswith("transformers"):
        return converted_fnet(fixture_dir, config)
    options = {key: config[key] for key in ("hard_thresholding_fraction", "sparsity_threshold", "double_skip")
               if key in config}
    if "GFNet" in source:
        model = convert_gfnet_checkpoint(checkpoint)
    elif "FourCastNet" in source:
        image_size = config["img_size"] if isinstance(config["img_size"], list) else [config["img_size"]] * 2
        model = convert_fourcastnet_checkpoint(checkpoint, image_size=tuple(image_size), **options)
        # features: the final tokens on their (B, h, w, D) grid, as FourCastNet's forward_features
        def run_fourcastnet(inputs):
            output, features = model(pixel_values=inputs["pixel_values"], return_dict=False)[:2]
            return {"output": output, "features": features.unflatten(1, model.config.grid_shape)}

        return run_fourcastnet
    else:
        model = convert_afno_checkpoint(checkpoint, **options)

    def run(inputs):
        outputs = model(pixel_values=inputs["pixel_values"])
        features = model.base_model(pixel_values=inputs["pixel_values"]).pooler_output
        return {"logits": outputs.logits, "features": features}

    return run


def converted_fnet(fixture_dir, config):
    """The FNet fixture's state dict is a transformers FNetForSequenceClassification's: give it the checkpoint folder
    the converter reads (config.json from the fixture's FNet fields, the weights), convert, and run it."""
    fnet_fields = {key: value for key, value in config.items() if key in {*FNetConfig().to_dict(), "num_labels"}}
    with tempfile.TemporaryDirectory() as folder:
        FNetConfig(**fnet_fields, architectures=["FNetForSequenceClassification"]).save_pretrained(folder)
        shutil.copyfile(fixture_dir / "state_dict.safetensors", Path(folder) / "model.safetensors")
        model = convert_fnet_checkpoint(folder)

    def run(inputs):
        outputs = model(inputs["input_ids"], token_type_ids=inputs["token_type_ids"], output_hidden_states=True)
        pooled = model.fnet_hybrid(inputs["input_ids"], token_type_ids=inputs["token_type_ids"]).pooler_output
        hidden_states = outputs.hidden_states  # embedding output, then each layer's
        return {
            "logits": outputs.logits,
            "logits_no_token_type_ids": model(inputs["input_ids"]).logits,
            "pooler_output": pooled,
            "embedding_output": hidden_states[0],
            "last_hidden_state": hidden_states[-1],
            **{f"hidden_states_{index}": hidden for index, hidden in enumerate(hidden_states)},
        }

    return run
