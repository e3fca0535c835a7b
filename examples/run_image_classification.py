"""Train a spectral encoder (or a same-size ViT baseline) for image classification with `Trainer`, save it with a
`ViTImageProcessor`, then classify a few validation images with `pipeline("image-classification")`.

Default data: Fashion-MNIST when Debian's `dataset-fashion-mnist` is installed (`apt-get install
dataset-fashion-mnist`), else scikit-learn's 8x8 digits (see `data.py`). Your own data: `--train_dir` (and
optionally `--validation_dir`), image folders with one sub-folder per class, loaded by `datasets`' imagefolder.

    python examples/run_image_classification.py --output_dir outputs/gfnet-digits
    python examples/run_image_classification.py --output_dir outputs/vit-digits --model_type vit
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from datasets import DatasetDict, load_dataset
from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder
from transformers import (
    AutoImageProcessor,
    AutoModelForImageClassification,
    ViTConfig,
    ViTImageProcessor,
    pipeline,
)

from fourierformers import SpectralTrainer

import data
from common import (
    FAMILY_CONFIGS,
    build_config,
    check_sample_limits,
    label_fields,
    limit_samples,
    load_metric,
    run_example,
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
        default=None, metadata={"help": "Side of the square model input; the data's own size by default."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only this many training examples."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep only this many evaluation examples."})
    num_pipeline_images: int = field(default=4, metadata={"help": "Validation images classified by the pipeline."})


def check_image_folder(flag, folder):
    """An image folder needs one sub-folder per class (at least two), each holding images that datasets'
    imagefolder reads; raise `FileNotFoundError` / `ValueError` naming `flag` otherwise. Returns the class names."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"`{flag}` {folder} is not a directory; pass a folder with one sub-folder per class.")
    extensions = ImageFolder.EXTENSIONS
    loose = [path.name for path in folder.iterdir() if path.is_file() and path.suffix.lower() in extensions]
    if loose:
        raise ValueError(
            f"`{flag}` {folder} holds images directly ({loose[:3]}); put them in one sub-folder per class, e.g. "
            f"{folder}/cat/1.png and {folder}/dog/2.png."
        )
    classes = {path.name: path for path in sorted(folder.iterdir()) if path.is_dir()}
    empty = [name for name, path in classes.items()
             if not any(file.suffix.lower() in extensions for file in path.rglob("*") if file.is_file())]
    if empty or len(classes) < 2:
        raise ValueError(
            f"`{flag}` {folder} needs at least two class sub-folders with images (.png, .jpg, .jpeg, .bmp, ... as "
            f"datasets' imagefolder reads them); found classes {sorted(classes)}"
            f"{f', of which {empty} hold no images' if empty else ''}."
        )
    return sorted(classes)


def load_raw_data(data_args):
    check_sample_limits(data_args)
    if data_args.train_dir is not None:
        classes = check_image_folder("--train_dir", data_args.train_dir)
        if data_args.validation_dir is not None:
            unseen = sorted(set(check_image_folder("--validation_dir", data_args.validation_dir)) - set(classes))
            if unseen:  # imagefolder would add them to the label set, and the model would predict them untrained
                raise ValueError(
                    f"Classes {unseen} occur in `--validation_dir` but not in `--train_dir`, whose classes are "
                    f"{classes}; every validation class needs training images."
                )
        data_files = {"train": f"{data_args.train_dir}/**"}
        if data_args.validation_dir is not None:
            data_files["validation"] = f"{data_args.validation_dir}/**"
        raw = load_dataset("imagefolder", data_files=data_files)
        if "validation" not in raw:
            splits = raw["train"].train_test_split(test_size=data.VALIDATION_FRACTION, seed=data.SPLIT_SEED)
            raw = DatasetDict(train=splits["train"], validation=splits["test"])
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


def default_patch_size(image_size):
    """The largest patch that tiles the image into a grid of at least 7 x 7: 8x8 digits -> 1 pixel (an 8x8 grid),
    28x28 Fashion-MNIST -> 4 (7x7), 64 -> 8 (8x8), 224 -> 32 (7x7)."""
    return max(size for size in range(1, max(1, image_size // 7) + 1) if image_size % size == 0)


def run(model_args, data_args, training_args):
    """Everything after argument parsing; `training_args.output_dir` is the work directory here."""
    raw = load_raw_data(data_args)
    names = raw["train"].features["label"].names

    if model_args.model_name_or_path is not None:
        image_processor = AutoImageProcessor.from_pretrained(model_args.model_name_or_path)
        image_size = image_processor.size["height"]
    else:
        image_size = data_args.image_size or raw["train"][0]["image"].size[0]
        image_processor = ViTImageProcessor(
            size={"height": image_size, "width": image_size},
            image_mean=[0.5, 0.5, 0.5],
            image_std=[0.5, 0.5, 0.5],
            do_convert_rgb=True,
        )
    patch_size = default_patch_size(image_size)
    defaults = {**MODEL_DEFAULTS, "image_size": image_size, "patch_size": patch_size, "num_channels": 3}
    config = build_config(model_args, defaults, baselines=IMAGE_BASELINES, **label_fields(names))
    if model_args.model_name_or_path is not None:
        model = AutoModelForImageClassification.from_pretrained(
            model_args.model_name_or_path, config=config, ignore_mismatched_sizes=True
        )
    else:
        model = AutoModelForImageClassification.from_config(config)
    logger.info("%s: %.2fM parameters", type(model).__name__, model.num_parameters() / 1e6)

    def transform(batch):
        pixel_values = image_processor(batch["image"], return_tensors="pt")["pixel_values"]  # (B, 3, H, W)
        return {"pixel_values": pixel_values, "labels": batch["label"]}

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
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.log_metrics("train", train_result.metrics)
    metrics = trainer.evaluate()
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("all", {**train_result.metrics, **metrics})
    trainer.save_model()

    if training_args.process_index == 0:
        classifier = pipeline(
            "image-classification", model=training_args.output_dir, top_k=1, device=training_args.device
        )
        examples = raw["validation"].select(range(min(data_args.num_pipeline_images, len(raw["validation"]))))
        for example, prediction in zip(examples, classifier([example["image"] for example in examples])):
            top = prediction[0]
            print(f"pipeline: {top['label']} {top['score']:.3f} | true label {names[example['label']]}")
    return metrics


if __name__ == "__main__":
    main()
