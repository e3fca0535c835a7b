"""Train a spectral encoder (or a same-size ViT baseline) for image classification with `Trainer`, save it with a
`ViTImageProcessor`, then classify a few validation images with `pipeline("image-classification")`.

Default data: Fashion-MNIST when Debian's `dataset-fashion-mnist` is installed (`apt-get install
dataset-fashion-mnist`), else scikit-learn's 8x8 digits (see `data.py`). Your own data: `--train_dir` (and
optionally `--validation_dir`), image folders with one sub-folder per class, loaded by `datasets`' imagefolder.

    python examples/run_image_classification.py --output_dir outputs/gfnet-digits
    python examples/run_image_classification.py --output_dir outputs/vit-digits --model_type vit
"""

import glob
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import load_dataset
from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder
from PIL import Image
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModelForImageClassification,
    ViTConfig,
    ViTImageProcessor,
    pipeline,
)
from transformers.utils import IMAGE_PROCESSOR_NAME

from fourierformers import SpectralTrainer
from fourierformers.configuration.patch_geometry import per_axis

import data
from common import (
    FAMILY_CONFIGS,
    build_config,
    check_sample_limits,
    checkpoint_label_names,
    class_names,
    evaluated_label_names,
    label_encoder,
    label_fields,
    limit_samples,
    load_metric,
    load_model,
    parse_overrides,
    pipeline_model,
    run_example,
    train_evaluate_predict,
)

logger = logging.getLogger(__name__)

IMAGE_BASELINES = {"vit": ViTConfig}
MODEL_DEFAULTS = dict(hidden_size=64, num_hidden_layers=2, intermediate_size=128, num_attention_heads=4)


@dataclass
class ModelArguments:
    model_type: str = field(
        default="gfnet",
        metadata={"help": "Architecture to train from scratch.", "choices": [*FAMILY_CONFIGS, *IMAGE_BASELINES]},
    )
    model_name_or_path: str | None = field(default=None, metadata={"help": "A saved checkpoint to fine-tune."})
    config_overrides: str | None = field(
        default=None, metadata={"help": "Comma-separated config fields, e.g. 'hidden_size=64,patch_size=2'."}
    )


@dataclass
class DataArguments:
    train_dir: str | None = field(default=None, metadata={"help": "Image folder, one sub-folder per class."})
    validation_dir: str | None = field(default=None, metadata={"help": "Validation image folder."})
    image_size: int | None = field(
        default=None,
        metadata={"help": "Side of the square model input. From scratch: the first training image's width by "
                  "default; a patch size that tiles 7 to 16 patches per side is chosen and the side rounded to the "
                  "nearest multiple of it that does (101 -> 100 px with 10-pixel patches; under 7 px: 1-pixel "
                  "patches, not rounded); both are logged. Fine-tuning (--do_train): used as given, the checkpoint's "
                  "size by default; another one resizes its position embeddings and filters (fourierformers models "
                  "only). Without --do_train only the checkpoint's own size is accepted."},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only this many training examples."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep only this many evaluation examples."})
    num_pipeline_images: int = field(
        default=4, metadata={"help": "Validation images classified by the pipeline at the end (0: none)."}
    )


def hidden(relative_path):
    """Whether datasets' imagefolder skips a file at `relative_path` in its folder: one under a name starting with
    "." or "__" (.ipynb_checkpoints, macOS ._ companions, __MACOSX)."""
    return any(part.startswith((".", "__")) for part in relative_path.parts)


def class_files(folder):
    """The files in the class folders of an image `folder` (checked by `check_image_folder`) as `data_files`
    patterns (escaped: datasets reads `[`, `*` and `?` in a name as wildcards), without hidden files and without
    metadata files, from which imagefolder would take the labels (or other columns, and no labels) instead of the
    class folders."""
    folder = Path(folder)
    files = [path for path in sorted(folder.glob("*/*")) if path.is_file() and not hidden(path.relative_to(folder))]
    return [glob.escape(str(path)) for path in files if path.name not in ImageFolder.METADATA_FILENAMES]


def check_image_folder(flag, folder, minimum_classes=2):
    """An image folder needs one sub-folder per class (at least `minimum_classes`: two to train on, one to evaluate
    on), each holding images that datasets' imagefolder reads, directly (imagefolder labels an image by the folder it
    lies in), readable (a broken file failed in training or after it) and of 8 bits per channel; raise
    `FileNotFoundError` / `ValueError` naming `flag` otherwise. A metadata file of imagefolder is ignored with a
    warning. Returns the class names."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"`{flag}` {folder} is not a directory; pass a folder with one sub-folder per class.")
    extensions = ImageFolder.EXTENSIONS
    loose = [path.name for path in folder.iterdir()
             if path.is_file() and path.suffix.lower() in extensions and not hidden(Path(path.name))]
    if loose:
        raise ValueError(
            f"`{flag}` {folder} holds images directly ({loose[:3]}); put them in one sub-folder per class, e.g. "
            f"{folder}/cat/1.png and {folder}/dog/2.png."
        )
    classes = {path.name: path for path in sorted(folder.iterdir()) if path.is_dir() and not hidden(Path(path.name))}
    images = {name: [file for file in sorted(path.rglob("*")) if file.is_file() and file.suffix.lower() in extensions
                     and not hidden(file.relative_to(folder))] for name, path in classes.items()}
    for name, files in images.items():
        nested = [file for file in files if file.parent != classes[name]]
        if nested:
            raise ValueError(
                f"`{flag}` {folder}: class folder {name!r} holds images in sub-folders ({nested[0]}); imagefolder "
                f"labels an image by the folder it lies in, so the images of {name!r} must lie directly in "
                f"{classes[name]}."
            )
        for file in files:
            try:
                with Image.open(file) as image:
                    image.load()  # decoded whole: verify() passes a truncated JPEG
                    mode = image.mode
            except (OSError, SyntaxError, ValueError) as error:
                message = f"`{flag}`: {file} is not a readable image ({error}); remove or replace it."
                raise ValueError(message) from error
            if mode.startswith(("I", "F")):  # the RGB conversion clips 16-bit, 32-bit and float values at 255
                raise ValueError(
                    f"`{flag}`: {file} has 16-bit, 32-bit or floating-point pixels (PIL mode {mode!r}), which the "
                    "conversion to RGB would clip at 255; the example reads 8-bit images (modes such as L, P, RGB, "
                    "RGBA): convert it to 8 bits per channel first."
                )
    for metadata in sorted(path for path in folder.rglob("*") if path.name in ImageFolder.METADATA_FILENAMES):
        logger.warning("Ignoring %s in `%s`: the labels are the names of the class folders", metadata, flag)
    empty = [name for name, files in images.items() if not files]
    if empty or len(classes) < minimum_classes:
        counted = "two class sub-folders" if minimum_classes == 2 else "one class sub-folder"
        raise ValueError(
            f"`{flag}` {folder} needs at least {counted} with images (.png, .jpg, .jpeg, .bmp, ... as "
            f"datasets' imagefolder reads them); found classes {sorted(classes)}"
            f"{f', of which {empty} hold no images' if empty else ''}."
        )
    return sorted(classes)


def load_raw_data(data_args, training):
    """The image folders of `--train_dir` and `--validation_dir`, else the built-in images; a run that does not
    train (`training` False) evaluates on folders of any of its checkpoint's classes, one of them included."""
    check_sample_limits(data_args)
    data.check_validation_flag("--validation_dir", data_args.validation_dir, "--train_dir", data_args.train_dir)
    if data_args.train_dir is not None:
        classes = check_image_folder("--train_dir", data_args.train_dir, 2 if training else 1)
        if data_args.validation_dir is not None:
            validation_classes = check_image_folder("--validation_dir", data_args.validation_dir, 1)
            unseen = sorted(set(validation_classes) - set(classes))
            if unseen:  # imagefolder would add them to the label set, and the model would predict them untrained
                raise ValueError(
                    f"Classes {unseen} occur in `--validation_dir` but not in `--train_dir`, whose classes are "
                    f"{classes}; every validation class needs training images."
                )
        data_files = {"train": class_files(data_args.train_dir)}
        if data_args.validation_dir is not None:
            data_files["validation"] = class_files(data_args.validation_dir)
        # labels from the class folders always: imagefolder infers them only where every file lies at one depth
        raw = load_dataset("imagefolder", data_files=data_files, drop_labels=False)
        if "validation" not in raw:
            raw = data.split_validation(raw["train"])
    else:
        raw = data.images()
    return limit_samples(raw, data_args)


def main(argv=None):
    """Parse the command line (`argv`, default `sys.argv[1:]`), train, evaluate, save to `--output_dir` (only when
    everything succeeded) and return the evaluation metrics."""
    return run_example(
        run,
        (ModelArguments, DataArguments),
        argv,
        learning_rate=1e-3,
        num_train_epochs=10,
        per_device_train_batch_size=32,
        per_device_eval_batch_size=128,
        warmup_steps=0.1,
        weight_decay=0.05,
        remove_unused_columns=False,
    )


def default_patch_and_image_size(image_size):
    """A patch size and a square side near `image_size` (a multiple of the patch, to which the processor resizes)
    for a grid of 7 to 16 patches per side: the side nearest `image_size`, then the largest patch (the fewest
    tokens). 8 px digits -> 1-pixel patches (8 x 8 grid), 28 px Fashion-MNIST -> 4 (7 x 7), 64 -> 8, 224 -> 32,
    a prime 101 -> 10 at 100 px. Images under 7 px keep 1-pixel patches."""
    candidates = []
    for patch in range(1, image_size // 7 + 1):
        side = min(16, max(7, round(image_size / patch))) * patch
        candidates.append((abs(side - image_size), -patch, side))
    if not candidates:
        return 1, image_size
    _, negative_patch, side = min(candidates)
    return -negative_patch, side


def image_processor_for(model_args, config):
    """The image processor of the checkpoint (its normalisation kept), or a new one that scales pixels to
    [-1, 1]; resizing to the model's `image_size` and converting images to RGB either way, so that it fits the
    final config and any image of the data (grayscale digits, palette or RGBA files). A processor that center-crops
    after resizing (CLIP's, DeiT's) resizes and crops to that size."""
    height, width = square(config.image_size)
    if model_args.model_name_or_path is not None:
        folder = Path(model_args.model_name_or_path)
        if not (folder / IMAGE_PROCESSOR_NAME).exists():
            raise ValueError(
                f"`--model_name_or_path` {folder} holds no image processor ({IMAGE_PROCESSOR_NAME}): save the one "
                "the model was trained with into that folder (`image_processor.save_pretrained(folder)`), so that "
                "images are resized and normalised as in its training."
            )
        image_processor = AutoImageProcessor.from_pretrained(folder)
        image_processor.size = {"height": height, "width": width}
        if hasattr(image_processor, "do_convert_rgb"):
            image_processor.do_convert_rgb = True
        if getattr(image_processor, "do_center_crop", False):
            image_processor.crop_size = {"height": height, "width": width}
        return image_processor
    return ViTImageProcessor(
        size={"height": height, "width": width},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        do_convert_rgb=True,
    )


def requested_image_size(model_args, data_args):
    """The image size that `--image_size` or `--config_overrides image_size=...` asks for, `None` when neither
    does; `ValueError` when both do, with different sizes."""
    overridden = parse_overrides(model_args.config_overrides).get("image_size")
    if overridden is not None:  # the config's own check, before the size is used here
        try:
            per_axis("image_size", overridden, spatial_dims=2)
        except ValueError as error:
            raise ValueError(f"`--config_overrides image_size={overridden}`: {error}") from None
    both = data_args.image_size is not None and overridden is not None
    if both and square(overridden) != square(data_args.image_size):  # 16 and [16, 16] are one size
        raise ValueError(
            f"`--image_size` {data_args.image_size} and `--config_overrides image_size={overridden}` disagree; give "
            "the image size once."
        )
    return data_args.image_size if data_args.image_size is not None else overridden


def square(size):
    """An image size as (height, width): configs hold an int for square images."""
    return (size, size) if isinstance(size, int) else tuple(size)


def check_image_model(model_path, saved):
    """Raise `ValueError` when the checkpoint `model_path` (config `saved`) is not an image model (no `image_size`,
    e.g. a text model), which this example could neither size its images for nor classify images with."""
    if getattr(saved, "image_size", None) is None:
        image_models = [*FAMILY_CONFIGS, *IMAGE_BASELINES]
        raise ValueError(
            f"`--model_name_or_path` {model_path} is a {saved.model_type} checkpoint without an image_size in its "
            f"config.json: not an image model (a text model?). Pass an image model ({image_models} with an "
            "image_size, e.g. the `--output_dir` of an earlier run of this script), or train a new model without "
            "`--model_name_or_path`."
        )


def check_rgb(model_args, config):
    """Raise `ValueError` for a model of other than 3 input channels: the image processor and
    `pipeline("image-classification")` convert every image to RGB (grayscale digits too), so such a model failed at
    its first training step."""
    if getattr(config, "num_channels", 3) != 3:
        source = (f"`--model_name_or_path` {model_args.model_name_or_path} takes"
                  if model_args.model_name_or_path is not None else "`--config_overrides` ask for")
        raise ValueError(
            f"{source} num_channels={config.num_channels}, but this example trains RGB image classifiers "
            "(num_channels=3): its image processor and pipeline('image-classification') convert every image, "
            "grayscale ones included, to 3-channel RGB."
        )


def check_resizable(model_path, saved, image_size, training):
    """Raise `ValueError` when the image size asked for (`--image_size` or `image_size` in `--config_overrides`) differs
    from that of the checkpoint `model_path` (config `saved`) and the model cannot be resized to it: without `training`
    (`--do_eval` / `--do_predict` alone evaluate the checkpoint as it was trained), or for a model whose position
    embeddings would be newly initialised (transformers' ViT: only fourierformers models rebuild their position
    embeddings and filters at a new size)."""
    if square(saved.image_size) == square(image_size):
        return
    if not training:
        raise ValueError(
            f"Image size {image_size} (`--image_size`) differs from the {saved.image_size} px that "
            f"`--model_name_or_path` {model_path} was trained at, and `--do_eval` / `--do_predict` without "
            f"`--do_train` evaluate the checkpoint as it is (images resized to {saved.image_size} px): leave "
            f"`--image_size` out, or add `--do_train` to fine-tune the model at {image_size} px."
        )
    if saved.model_type not in FAMILY_CONFIGS:
        raise ValueError(
            f"Image size {image_size} (`--image_size` or `--config_overrides image_size=...`) differs from the "
            f"{saved.image_size} px of the {saved.model_type} checkpoint `--model_name_or_path` {model_path}, which "
            f"cannot be resized (only {list(FAMILY_CONFIGS)} can); leave the image size out."
        )


def run(model_args, data_args, training_args):
    """Everything after argument parsing; `training_args.output_dir` is the work directory here."""
    if data_args.num_pipeline_images < 0:
        raise ValueError(f"`--num_pipeline_images` must be 0 or more, got {data_args.num_pipeline_images}.")
    requested = requested_image_size(model_args, data_args)
    saved = None if model_args.model_name_or_path is None else AutoConfig.from_pretrained(model_args.model_name_or_path)
    if saved is not None:
        check_image_model(model_args.model_name_or_path, saved)
        if requested is not None:
            check_resizable(model_args.model_name_or_path, saved, requested, training_args.do_train)
    raw = load_raw_data(data_args, training_args.do_train)
    names = class_names(
        raw, "label", "--train_dir", known=evaluated_label_names(model_args, training_args),
        checkpoint=checkpoint_label_names(model_args),
    )
    to_id = label_encoder(raw, "label", names)

    task_fields = label_fields(names)
    if saved is None:
        # the size asked for by either flag, else the data's: the patch size follows it
        data_size = min(square(requested)) if requested is not None else raw["train"][0]["image"].size[0]
        patch_size, image_size = default_patch_and_image_size(data_size)
        defaults = {**MODEL_DEFAULTS, "image_size": image_size, "patch_size": patch_size, "num_channels": 3}
    else:
        defaults = {}
        if data_args.image_size is not None and square(data_args.image_size) != square(saved.image_size):
            task_fields["image_size"] = data_args.image_size  # 16 asks nothing of a [16, 16] checkpoint
    config = build_config(
        model_args, defaults, baselines=IMAGE_BASELINES, training=training_args.do_train, **task_fields
    )
    check_rgb(model_args, config)
    image_processor = image_processor_for(model_args, config)
    logger.info("Images resized to %s px, %s-pixel patches", config.image_size, config.patch_size)
    model = load_model(AutoModelForImageClassification, model_args, training_args, config)
    logger.info("%s: %.2fM parameters", type(model).__name__, model.num_parameters() / 1e6)

    def transform(batch):
        pixel_values = image_processor(batch["image"], return_tensors="pt")["pixel_values"]  # (B, 3, H, W)
        return {"pixel_values": pixel_values, "labels": [to_id(label) for label in batch["label"]]}

    def collate(examples):
        return {
            "pixel_values": torch.stack([example["pixel_values"] for example in examples]),
            "labels": torch.tensor([example["labels"] for example in examples]),
        }

    metric = load_metric("accuracy")

    def compute_metrics(eval_prediction):
        predictions = np.argmax(eval_prediction.predictions, axis=-1)
        return metric.compute(predictions=predictions, references=eval_prediction.label_ids)

    trainer = SpectralTrainer(
        model=model,
        args=training_args,
        train_dataset=raw["train"].with_transform(transform),
        eval_dataset=raw["validation"].with_transform(transform),
        processing_class=image_processor,
        data_collator=collate,
        compute_metrics=compute_metrics,
    )

    def write_predictions(prediction_output):
        """`predict_results.txt`: the index of each validation image and the predicted class."""
        predictions = np.argmax(prediction_output.predictions, axis=-1)
        lines = ["index\tprediction", *(f"{index}\t{names[i]}" for index, i in enumerate(predictions))]
        Path(training_args.output_dir, "predict_results.txt").write_text("\n".join(lines) + "\n")

    metrics = train_evaluate_predict(trainer, training_args, write_predictions)

    if training_args.process_index == 0 and data_args.num_pipeline_images:
        classifier = pipeline(
            "image-classification", **pipeline_model(model_args, training_args), top_k=1, device=training_args.device
        )
        examples = raw["validation"].select(range(min(data_args.num_pipeline_images, len(raw["validation"]))))
        folder_label = examples.features["label"]  # the data's ids (a folder's classes, sorted), not the model's
        for example, prediction in zip(examples, classifier([example["image"] for example in examples])):
            top = prediction[0]
            print(f"pipeline: {top['label']} {top['score']:.3f} | true label {folder_label.int2str(example['label'])}")
    return metrics


if __name__ == "__main__":
    main()
