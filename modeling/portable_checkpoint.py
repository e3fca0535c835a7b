"""What `save_pretrained` writes next to the weights so that a checkpoint stands on its own: the source files that
`trust_remote_code=True` loads where fourierformers is not installed, a complete `auto_map`, and a model card.

transformers copies the saved class's file and its single-dot sibling imports (`from .x import y`) into the
checkpoint folder, which is flat. Our modeling files import their config absolutely
(`from fourierformers.configuration.configuration_x import XConfig`), because configs and models live in two
folders; in the flat copy that line becomes `from .configuration_x import XConfig` and every module it reaches is
copied as well. A user's subclass in a module of its own imports its base from the package
(`from fourierformers import GFNetForSequenceClassification`, or `from fourierformers.configuration import ...`):
each name becomes an import from the module that defines it (`from .modeling_gfnet import
GFNetForSequenceClassification`). Only the standard library is used here: this file is itself part of every saved
checkpoint.
"""

import ast
import hashlib
import importlib
import io
import json
import logging
import re
import sys
from pathlib import Path

PACKAGE_NAME = "fourierformers"
# `from fourierformers[.<subpackage>].<module> import ...`: group 1 the indentation, 2 the module, 3 its basename.
PACKAGE_IMPORT = re.compile(rf"^([ \t]*)from[ \t]+({PACKAGE_NAME}\.(?:\w+\.)*(\w+))[ \t]+import\b", re.MULTILINE)
SIBLING_IMPORT = re.compile(r"^[ \t]*from[ \t]+\.(\w+)[ \t]+import\b", re.MULTILINE)

logger = logging.getLogger(__name__)

PIPELINE_TAGS = {
    "AutoModel": "feature-extraction",
    "AutoModelForSequenceClassification": "text-classification",
    "AutoModelForTokenClassification": "token-classification",
    "AutoModelForMaskedLM": "fill-mask",
    # Hub tasks without a transformers 5 pipeline (its question-answering pipeline was removed)
    "AutoModelForQuestionAnswering": "question-answering",
    "AutoModelForMultipleChoice": "multiple-choice",
    "AutoModelForImageClassification": "image-classification",
}
IMAGE_BACKBONE_PIPELINE_TAG = "image-feature-extraction"  # "feature-extraction" needs a tokenizer


def flat_sources(classes):
    """File name -> source text of the modules defining `classes` and of every module they import from the package
    or from their own folder, transitively, with package imports rewritten as flat sibling imports. Two different
    modules of one file name would overwrite each other in the flat folder: refused (copies of one file are not
    different: transformers loads the config and model classes of a flat checkpoint from two folders)."""
    pending = [Path(sys.modules[cls.__module__].__file__).resolve() for cls in classes]
    sources, originals = {}, {}  # file name -> flat text, (path, text as read)
    while pending:
        path = pending.pop()
        text = path.read_text(encoding="utf-8")
        if path.name in originals:
            if originals[path.name][1] != text:
                raise ValueError(
                    f"Two modules would be saved as {path.name} in the flat checkpoint folder: "
                    f"{originals[path.name][0]} and {path}. Rename one of them."
                )
            continue
        originals[path.name] = (path, text)
        pending.extend((path.parent / f"{name}.py").resolve() for name in SIBLING_IMPORT.findall(text))
        # imports from a package (`from fourierformers.configuration import ...`) are rewritten below
        module_imports = [match for match in PACKAGE_IMPORT.finditer(text) if not _is_package(match[2])]
        pending.extend(Path(importlib.import_module(match[2]).__file__).resolve() for match in module_imports)
        text, defining_modules = without_imports_from_packages(text)
        pending.extend(Path(sys.modules[module].__file__).resolve() for module in defining_modules)
        sources[path.name] = PACKAGE_IMPORT.sub(
            lambda match: match[0] if _is_package(match[2]) else f"{match[1]}from .{match[3]} import", text
        )
        if imports_the_package(sources[path.name]):
            logger.warning(
                f"{path} imports {PACKAGE_NAME} or one of its modules by name (`import {PACKAGE_NAME}`, `from "
                f"{PACKAGE_NAME} import modeling_gfnet`, `import *`): the checkpoint loads with "
                f"`trust_remote_code=True` only where {PACKAGE_NAME} is installed. Import the classes and functions "
                f"themselves (`from {PACKAGE_NAME} import GFNetModel`) to have them saved."
            )
    return sources


def imports_the_package(text):
    """Whether the code (not its docstrings) still imports fourierformers after the rewrite: `import fourierformers`,
    modules imported by name, `import *`."""
    for node in ast.walk(ast.parse(text)):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        if any(name == PACKAGE_NAME or name.startswith(f"{PACKAGE_NAME}.") for name in names):
            return True
    return False


def _is_package(module_name):
    """Whether `module_name` is fourierformers or one of its subpackages (a folder with an __init__.py, which the
    flat checkpoint folder cannot hold)."""
    if module_name != PACKAGE_NAME and not module_name.startswith(f"{PACKAGE_NAME}."):
        return False
    return hasattr(importlib.import_module(module_name), "__path__")


def without_imports_from_packages(text):
    """`text` with each `from fourierformers[.subpackage] import A, B as C` statement replaced by one import per name
    from the module defining it (`from .modeling_gfnet import A`), and the names of those modules. Names that are
    modules, or `import *`, have no single defining module: they are left, and the checkpoint needs the package for
    them."""
    statements = [node for node in ast.walk(ast.parse(text))
                  if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and _is_package(node.module)]
    if not statements:  # a flat copy (a checkpoint loaded with trust_remote_code and saved again) has none
        return text, []
    # split as `ast` numbers lines (\n, \r\n, \r; not the form feeds and others that `splitlines` also splits at),
    # and as bytes: `ast` gives UTF-8 byte columns
    lines = [line.encode("utf-8") for line in io.StringIO(text, newline="").readlines()]
    defining_modules = set()
    for statement in sorted(statements, key=lambda node: (node.lineno, node.col_offset), reverse=True):
        package = importlib.import_module(statement.module)
        modules = [getattr(getattr(package, alias.name, None), "__module__", None) for alias in statement.names]
        if not all(module and module.startswith(f"{PACKAGE_NAME}.") for module in modules):
            continue
        imports = [
            f"from .{module.rsplit('.', 1)[-1]} import {alias.name}{f' as {alias.asname}' if alias.asname else ''}"
            for alias, module in zip(statement.names, modules)
        ]
        before = lines[statement.lineno - 1][: statement.col_offset]
        after = lines[statement.end_lineno - 1][statement.end_col_offset :]
        if before.strip() or after.strip():  # shares its line (`import os; from ...`, `if TYPE_CHECKING: from ...`)
            replacement = before + "; ".join(imports).encode("utf-8") + after
        else:
            replacement = b"".join(before + line.encode("utf-8") + b"\n" for line in imports[:-1])
            replacement += before + imports[-1].encode("utf-8") + after
        lines[statement.lineno - 1 : statement.end_lineno] = [replacement]
        defining_modules.update(modules)
    return b"".join(lines).decode("utf-8"), sorted(defining_modules)


def family_auto_map(model_class, config_class, saved_auto_map):
    """`saved_auto_map` (transformers' own, for registered classes) completed with the config class and every
    registered model class of the family's modeling file (that of the model class or, for a user's subclass, of its
    nearest base in the package), so one checkpoint loads with `AutoModel` as well as with the Auto class of its own
    head (the saved class's own, which may be a subclass that inherited its Auto class, is the one mapped to it). A
    subclass's own config class (its own model type) has only its own model class mapped: the family's classes take
    the family's config, and transformers refuses to map a class to another config class; a family class given such
    a config gets no Auto class (not even the entry transformers wrote for it) and a warning."""
    auto_map = {**saved_auto_map, "AutoConfig": f"{config_class.__module__.rsplit('.', 1)[-1]}.{config_class.__name__}"}
    family_class = next((base for base in model_class.__mro__ if base.__module__.startswith(f"{PACKAGE_NAME}.")),
                        model_class)
    module = sys.modules[family_class.__module__]
    # by name, as transformers compares them: in a process without the package the classes come from copies
    family_config = family_class.config_class.__name__ == config_class.__name__
    for value in vars(module).values() if family_config else ():
        auto_class = vars(value).get("_auto_class") if isinstance(value, type) else None
        if auto_class is not None and value.__module__ == module.__name__:
            auto_map[auto_class] = f"{module.__name__.rsplit('.', 1)[-1]}.{value.__name__}"
    if model_class.config_class.__name__ == config_class.__name__:
        auto_map[model_class._auto_class] = f"{model_class.__module__.rsplit('.', 1)[-1]}.{model_class.__name__}"
    else:
        auto_map.pop(model_class._auto_class, None)
        logger.warning(
            f"{model_class.__name__} takes {model_class.config_class.__name__}, not the model's "
            f"{config_class.__name__}: transformers would refuse to map it to that config class, so the checkpoint "
            f"gets no Auto class for the model and loads with `trust_remote_code=True` only as its config. Save a "
            f"subclass of {model_class.__name__} with `config_class = {config_class.__name__}` instead."
        )
    return auto_map


def class_with_source_file(cls):
    """`cls`, or where its code is in no file that can be copied (a class defined in a script run as `__main__`,
    whose file is the user's whole script, or typed into `python -c` or a notebook) its nearest base class that is."""
    for base in cls.__mro__:
        if base.__module__ != "__main__" and getattr(sys.modules.get(base.__module__), "__file__", None):
            if base is not cls:
                logger.warning(
                    f"{cls.__name__} is defined in `{cls.__module__}`, so its code is not saved with the checkpoint: "
                    f"it loads with `trust_remote_code=True` as {base.__name__}. Define {cls.__name__} in a module "
                    "of its own to have its code saved."
                )
            return base
    raise TypeError(f"{cls.__name__} has no base class defined in a source file.")


def write_remote_code(model, save_directory):
    """Make the checkpoint in `save_directory` loadable with `trust_remote_code=True` without the package: write the
    flat source files of the model and config classes and add the family's classes to `auto_map` in config.json."""
    save_directory = Path(save_directory)
    model_class, config_class = class_with_source_file(type(model)), class_with_source_file(type(model.config))
    for name, text in flat_sources([model_class, config_class]).items():
        (save_directory / name).write_text(text, encoding="utf-8")
    config_file = save_directory / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["auto_map"] = family_auto_map(model_class, config_class, config.get("auto_map", {}))
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _layout_summary(mixer_layout):
    """["fourier", "fourier", "attention"] -> "fourier ×2, attention ×1" in order of first appearance; a hybrid
    strategy entry counts as e.g. "adaptive(fourier+attention)"."""
    counts = {}
    for entry in mixer_layout:
        mixer = entry if isinstance(entry, str) else f"{entry['strategy']}({'+'.join(entry['mixers'])})"
        counts[mixer] = counts.get(mixer, 0) + 1
    return ", ".join(f"{mixer} ×{count}" for mixer, count in counts.items())


# transformers 5.25's AutoBackbone.from_pretrained asks the Hub whether its argument is a repository before anything
# else (a timm model name otherwise), and a local folder fails that check.
BACKBONE_LOADING = f"""`AutoBackbone.from_pretrained` takes this checkpoint by its Hub id (with
`trust_remote_code=True` where `{PACKAGE_NAME}` is not installed), but not from a local folder. From a folder, with
or without `{PACKAGE_NAME}` (the source files saved next to the weights are used):

```python
from transformers import AutoConfig
from transformers.dynamic_module_utils import get_class_from_dynamic_module

config = AutoConfig.from_pretrained("path/to/this/checkpoint", trust_remote_code=True)
backbone_class = get_class_from_dynamic_module(config.auto_map["AutoBackbone"], "path/to/this/checkpoint")
model = backbone_class.from_pretrained("path/to/this/checkpoint")
```
"""


def model_loading(auto_class):
    """The card's loading instructions for a model of `auto_class`."""
    if auto_class == "AutoBackbone":
        return BACKBONE_LOADING
    return f"""With `{PACKAGE_NAME}` installed:

```python
import {PACKAGE_NAME}
from transformers import {auto_class}

model = {auto_class}.from_pretrained("path/to/this/checkpoint")
```

Without it, the source files saved next to the weights are used:

```python
from transformers import {auto_class}

model = {auto_class}.from_pretrained("path/to/this/checkpoint", trust_remote_code=True)
```
"""


def model_card(model):
    """A short README.md for a checkpoint, generated from the model and its config."""
    config = model.config
    class_name = type(model).__name__
    auto_class = getattr(model, "_auto_class", None) or "AutoModel"
    pipeline_tag = PIPELINE_TAGS.get(auto_class)
    if auto_class == "AutoModel" and config.is_vision:
        pipeline_tag = IMAGE_BACKBONE_PIPELINE_TAG
    if config.condition_type is not None:  # no pipeline passes a condition
        pipeline_tag = None
    num_parameters = model.num_parameters()
    # with the tags of `model.add_model_tags`, which transformers puts in the card it writes itself
    tags = dict.fromkeys([PACKAGE_NAME, config.model_type, *(getattr(model, "model_tags", None) or [])])
    front_matter = ["---", "library_name: transformers", "tags:", *(f"- {tag}" for tag in tags)]
    if pipeline_tag is not None:
        front_matter.append(f"pipeline_tag: {pipeline_tag}")
    front_matter.append("---")
    mixers = "spectral (FFT-based) mixers" + (" and self-attention" if "attention" in config.mixers_used else "")
    mlp_size = config.intermediate_size or "none (mixer-only blocks)"
    rows = [
        ("model type", f"`{config.model_type}`"),
        ("class", f"`{class_name}`"),
        ("token mixers per layer", f"`{config.mixer_layout}` ({_layout_summary(config.mixer_layout)})"),
    ]
    if config.hidden_sizes is None:
        rows += [("hidden / MLP size", f"{config.hidden_size} / {mlp_size}"), ("layers", str(config.num_hidden_layers))]
    else:
        rows += [
            ("stage widths / depths", f"{list(config.hidden_sizes)} / {list(config.depths)}"),
            ("MLP size (last stage)", str(mlp_size)),
        ]
    if config.is_vision:
        grids = " → ".join(" × ".join(map(str, grid)) for grid in config.stage_grid_shapes)
        rows += [
            ("image size", " × ".join(map(str, config.image_shape)) + f" px, {config.num_channels} channels"),
            ("patch size", " × ".join(map(str, config.patch_geometry()[0]))),
            ("token grid (FFT size) per stage" if config.hidden_sizes else "token grid (FFT size)", grids),
        ]
    else:
        rows += [
            ("max sequence length (FFT length)", str(config.max_position_embeddings)),
            ("vocabulary", str(config.vocab_size)),
        ]
    condition_note = ""  # what every call needs besides the inputs
    if config.condition_type is not None:
        condition_size = config.effective_condition_size
        rows.append(("conditioning", f"`{config.condition_type}` on a condition of {condition_size} channels"))
        if config.condition_type == "cross_attention":
            condition_note = (
                f" Every call also needs a `condition` of shape (batch_size, condition_length, {condition_size}) (and "
                "a `condition_mask` where condition tokens are padded), which no pipeline passes."
            )
        else:
            condition_note = (
                f" Every call also needs a pooled `condition` of shape (batch_size, {condition_size}), which no "
                "pipeline passes."
            )
    rows += [
        ("blocks", "pre-norm" if config.norm_first else "post-norm"),
        ("pooling", f"{config.effective_pooling}{' + dense/tanh' if config.pooler_projection else ''}"),
        ("parameters", f"{num_parameters:,}"),
    ]
    if auto_class.endswith("Classification"):
        rows.append(("labels", ", ".join(str(label) for label in config.id2label.values())))
    table = "\n".join(["| | |", "|---|---|", *(f"| {key} | {value} |" for key, value in rows)])
    if model.main_input_name == "input_ids":
        inputs = (
            f"text of at most {config.max_position_embeddings} tokens. Every mixer honours `attention_mask` and the "
            "FFT length is fixed at `max_position_embeddings`, so a sequence gives the same outputs alone or in any "
            "padded batch; longer inputs raise a `ValueError`: truncate them"
        )
    else:
        inputs = (
            f"images of {' × '.join(map(str, config.image_shape))} px: `pixel_values` of shape (batch_size, "
            f"{config.num_channels}, {', '.join(map(str, config.image_shape))}) (an image processor resizing to that "
            "size makes them); other sizes that the patches tile need `interpolate_pos_encoding=True`"
        )
    body = f"""
# {class_name}

A `{config.model_type}` model from `{PACKAGE_NAME}`: an encoder
whose blocks mix tokens with {mixers}, as a Hugging Face `transformers` model.

{table}

## Intended use

`{auto_class}` ({pipeline_tag or class_name}) on {inputs}.{condition_note}

## How to load

{model_loading(auto_class)}"""
    return "\n".join(front_matter) + "\n" + body


def write_model_card(model, save_directory):
    """Write README.md, unless the folder has one that is not an unedited card of ours: a card someone wrote or
    edited is kept, while ours is replaced so that it describes the model saved last (its head, labels, size). Our
    cards end with a comment holding the SHA-256 of the text above it, which an edit no longer matches."""
    card_file = Path(save_directory) / "README.md"
    if card_file.exists() and not is_unedited_generated_card(card_file.read_text(encoding="utf-8", errors="replace")):
        logger.info(f"Kept the model card {card_file}: it was written or edited by hand.")
        return
    card = model_card(model)
    card_file.write_text(f"{card}{GENERATED_CARD_MARK.format(digest=text_digest(card))}", encoding="utf-8")


GENERATED_CARD_MARK = "\n<!-- generated by fourierformers, sha256 {digest}: a card edited above is kept -->\n"
GENERATED_CARD_MARK_PATTERN = re.compile(r"\n<!-- generated by fourierformers, sha256 ([0-9a-f]{64}): .* -->\n\Z")


def text_digest(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_unedited_generated_card(text):
    mark = GENERATED_CARD_MARK_PATTERN.search(text)
    return mark is not None and text_digest(text[:mark.start()]) == mark.group(1)
