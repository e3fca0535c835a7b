"""`load_converted` hook for `../shared/fixtures/check_fixture.py`: runs this repository's converters on a fixture.

    python ../shared/fixtures/check_fixture.py gfnet_h --loader tests/fixture_hooks.py
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from convert_original_afno import convert_afno_checkpoint, convert_fourcastnet_checkpoint  # noqa: E402
from convert_original_gfnet import convert_gfnet_checkpoint  # noqa: E402


def load_converted(fixture_dir):
    """The converted model of a vision fixture as a callable: pixel_values -> {"logits"/"output", "features"}."""
    fixture_dir = Path(fixture_dir)
    config = json.loads((fixture_dir / "config.json").read_text())
    checkpoint = fixture_dir / "state_dict.safetensors"
    source = config["source"]
    options = {key: config[key] for key in ("hard_thresholding_fraction", "sparsity_threshold", "double_skip")
               if key in config}
    if "GFNet" in source:
        model = convert_gfnet_checkpoint(checkpoint)
    elif "FourCastNet" in source:
        image_size = config["img_size"] if isinstance(config["img_size"], list) else [config["img_size"]] * 2
        model = convert_fourcastnet_checkpoint(checkpoint, image_size=tuple(image_size), **options)
        return lambda inputs: dict(
            zip(("output", "features"), model(pixel_values=inputs["pixel_values"], return_dict=False)[:2])
        )
    else:
        model = convert_afno_checkpoint(checkpoint, **options)

    def run(inputs):
        outputs = model(pixel_values=inputs["pixel_values"])
        features = model.base_model(pixel_values=inputs["pixel_values"]).pooler_output
        return {"logits": outputs.logits, "features": features}

    return run
