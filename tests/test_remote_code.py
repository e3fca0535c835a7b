"""Checkpoints that load without fourierformers: `save_pretrained` writes the flat source files, a complete
`auto_map` and a model card, and every family x head loads with `trust_remote_code=True` in a fresh process in
which `import fourierformers` fails, giving the original outputs."""

import ast
import importlib
import json
import os
import shutil
import subprocess
import sys
import types

import pytest
import torch
import transformers.modeling_utils
import transformers.utils.hub
from conftest import FAMILIES, model_class, tiny_config, tiny_config_of
from fourierformers import portable_checkpoint
from safetensors.torch import load_file, save_file

HEADS = ["Model", "ForSequenceClassification", "ForTokenClassification", "ForMaskedLM", "ForQuestionAnswering",
         "ForMultipleChoice", "ForImageClassification", "ForPatchRegression", "ForMaskedImageModeling"]
PIPELINE_TAGS = {  # the Hub task a card names, per head (no pipeline reads the dense per-patch predictions)
    "Model": "feature-extraction", "ForSequenceClassification": "text-classification",
    "ForTokenClassification": "token-classification", "ForMaskedLM": "fill-mask",
    "ForQuestionAnswering": "question-answering", "ForMultipleChoice": "multiple-choice",
    "ForImageClassification": "image-classification", "ForPatchRegression": None, "ForMaskedImageModeling": None,
}
IMAGE_FIELDS = {"ForImageClassification": dict(image_size=8, patch_size=2),
                "ForPatchRegression": dict(image_size=8, patch_size=2, num_output_channels=2),
                "ForMaskedImageModeling": dict(image_size=8, patch_size=2)}

# The start of a script run in a subprocess that stands for a user without the package.
BLOCK_PACKAGE = r"""
import json
import sys
from pathlib import Path


class BlockFourierformers:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "fourierformers":
            raise ImportError(f"{name} is blocked: this process stands for a user without fourierformers")


sys.meta_path.insert(0, BlockFourierformers())
try:
    import fourierformers
    sys.exit("fourierformers could still be imported")
except ImportError:
    pass

import torch
import transformers
from safetensors.torch import load_file
"""
# Loads every `FOLDER=AUTO_CLASS` given on the command line with that Auto class and with AutoModel, saves the loaded
# model again and reloads that copy, and prints the largest output differences as JSON.
LOADER = BLOCK_PACKAGE + r"""
report = {}
for argument in sys.argv[1:]:
    folder, auto_class_name = argument.split("=")
    folder = Path(folder)
    config = transformers.AutoConfig.from_pretrained(folder, trust_remote_code=True)
    auto_class = getattr(transformers, auto_class_name)
    model = auto_class.from_pretrained(folder, trust_remote_code=True).eval()
    backbone = transformers.AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    model.save_pretrained(folder / "resaved")
    resaved = auto_class.from_pretrained(folder / "resaved", trust_remote_code=True).eval()
    inputs = load_file(folder / "inputs.safetensors")
    backbone_file = folder / "backbone_inputs.safetensors"  # where the head's inputs are not the backbone's
    backbone_inputs = load_file(backbone_file) if backbone_file.exists() else inputs
    expected = load_file(folder / "expected.safetensors")
    with torch.no_grad():
        output = model(**inputs)
        hidden = backbone(**backbone_inputs).last_hidden_state
        output_resaved = resaved(**inputs)
    main_name = next(name for name in ("predictions", "reconstruction", "logits", "start_logits", "last_hidden_state")
                     if name in output)
    main, main_resaved = output[main_name], output_resaved[main_name]
    report[folder.name] = {
        "config_class": type(config).__module__.split(".")[0],
        "model_class": type(model).__name__,
        "model_module": type(model).__module__.split(".")[0],
        "main": (main - expected["main"]).abs().max().item(),
        "hidden": (hidden - expected["hidden"]).abs().max().item(),
        "resaved": (main_resaved - expected["main"]).abs().max().item(),
    }
print(json.dumps(report))
"""


# Runs the Python block of the card in the checkpoint folder given on the command line (the folder in place of its
# placeholder), then the model it loaded on the saved `pixel_values`, and prints what it loaded and the largest
# difference from the saved feature maps as JSON.
CARD_LOADER = BLOCK_PACKAGE + r"""
import re

folder = Path(sys.argv[1])
card = (folder / "README.md").read_text()
namespace = {}
exec(re.search(r"```python\n(.*?)```", card, flags=re.S).group(1).replace("path/to/this/checkpoint", str(folder)),
     namespace)
model = namespace["model"].eval()
saved = load_file(folder / "io.safetensors")
with torch.no_grad():
    feature_maps = model(pixel_values=saved["pixel_values"]).feature_maps
print(json.dumps({
    "model_class": type(model).__name__,
    "model_module": type(model).__module__.split(".")[0],
    "out_features": model.out_features,
    "difference": max((f - saved[f"map{i}"]).abs().max().item() for i, f in enumerate(feature_maps)),
}))
"""


def save_checkpoint(family, head, folder, model=None):
    """Save a tiny model of `family` x `head` (or `model`, of that head) to `folder` with inputs (padded text, two
    choices of it for multiple choice, or images), the backbone's inputs (the choices as sequences) and the
    outputs."""
    if head in IMAGE_FIELDS:
        model = model_class(family, head)(tiny_config(family, **IMAGE_FIELDS[head])).eval()
        inputs = {"pixel_values": torch.randn(2, 3, 8, 8)}
    else:
        model = (model or model_class(family, head)(tiny_config(family))).eval()
        input_ids = torch.randint(4, 99, (2, 10))
        attention_mask = torch.ones_like(input_ids)
        attention_mask[1, 6:] = 0
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    backbone_inputs = inputs
    if head == "ForMultipleChoice":
        inputs = {name: tensor.reshape(1, 2, -1) for name, tensor in inputs.items()}
    model.save_pretrained(folder)
    with torch.no_grad():
        output = model(**inputs)
        hidden = model.base_model(**backbone_inputs).last_hidden_state
    main = {"Model": "last_hidden_state", "ForPatchRegression": "predictions", "ForQuestionAnswering": "start_logits",
            "ForMaskedImageModeling": "reconstruction"}
    main = output[main.get(head, "logits")]
    save_file(inputs, folder / "inputs.safetensors")
    if backbone_inputs is not inputs:
        save_file(backbone_inputs, folder / "backbone_inputs.safetensors")
    save_file({"main": main, "hidden": hidden}, folder / "expected.safetensors")
    return model


def load_without_package(tmp_path, arguments, script=LOADER):
    """Run `script` (LOADER: on `arguments`, FOLDER=AUTO_CLASS) in a process without the package; its report."""
    environment = {
        key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "HF_MODULES_CACHE")
    }
    environment.update(HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-c", script, *arguments],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_every_family_and_head_loads_without_the_package(tmp_path):
    folders, arguments = [], []
    for family in FAMILIES:
        for head in HEADS:
            folder = tmp_path / "checkpoints" / f"{family}-{head}"
            model = save_checkpoint(family, head, folder)
            folders.append(folder)
            arguments.append(f"{folder}={model._auto_class}")
    report = load_without_package(tmp_path, arguments)
    assert sorted(report) == sorted(folder.name for folder in folders)
    for name, loaded in report.items():
        family, head = name.split("-")
        assert loaded["model_class"] == model_class(family, head).__name__, name
        assert loaded["config_class"] == loaded["model_module"] == "transformers_modules", name
        assert max(loaded["main"], loaded["hidden"], loaded["resaved"]) <= 1e-6, (name, loaded)


@pytest.mark.parametrize("family", FAMILIES)
def test_saved_sources_are_flat_and_complete(family, tmp_path):
    model = model_class(family, "ForSequenceClassification")(tiny_config(family))
    model.save_pretrained(tmp_path)
    sources = {path.stem: path for path in tmp_path.glob("*.py")}
    needed = {f"modeling_{family}", f"configuration_{family}", "modeling_spectral", "configuration_spectral"}
    assert needed <= set(sources)
    for name, path in sources.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.module in sources, f"{name}.py imports .{node.module}, which was not saved"
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module]
                assert not any(module.startswith("fourierformers") for module in modules), f"{name}.py: {modules}"

    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    prefix = type(model).__name__.removesuffix("ForSequenceClassification")
    assert auto_map["AutoConfig"] == f"configuration_{family}.{type(model.config).__name__}"
    for auto_class, head in [
        ("AutoModel", "Model"),
        ("AutoModelForSequenceClassification", "ForSequenceClassification"),
        ("AutoModelForTokenClassification", "ForTokenClassification"),
        ("AutoModelForMaskedLM", "ForMaskedLM"),
        ("AutoModelForImageClassification", "ForImageClassification"),
        ("AutoModelForImageToImage", "ForPatchRegression"),
    ]:
        assert auto_map[auto_class] == f"modeling_{family}.{prefix}{head}"


def test_push_to_hub_uploads_what_a_local_save_writes(tmp_path, monkeypatch):
    """save_pretrained(push_to_hub=True) uploads the flat sources, the full auto_map and our card (transformers
    uploads inside its own save_pretrained, before they are written). The hub is replaced by a folder."""
    uploads = []
    hub_api = types.SimpleNamespace(
        create_repo=lambda repo_id, **options: types.SimpleNamespace(repo_id=f"user/{repo_id}")
    )
    monkeypatch.setattr(transformers.utils.hub, "hf_api", lambda: hub_api)
    monkeypatch.setattr(transformers.modeling_utils, "hf_api", lambda: hub_api)

    def upload(model, folder, repo_id, files_timestamps, **options):
        uploads.append(repo_id)
        shutil.copytree(folder, tmp_path / "hub")

    monkeypatch.setattr(transformers.PreTrainedModel, "_upload_modified_files", upload)
    model = model_class("gfnet", "ForSequenceClassification")(tiny_config("gfnet"))
    model.save_pretrained(tmp_path / "pushed", push_to_hub=True, private=True, commit_message="first")
    model.save_pretrained(tmp_path / "local")
    assert uploads == ["user/pushed"]
    hub, local = tmp_path / "hub", tmp_path / "local"
    assert sorted(path.name for path in hub.iterdir()) == sorted(path.name for path in local.iterdir())
    for path in local.iterdir():
        assert path.read_bytes() == (hub / path.name).read_bytes(), path.name


SUBCLASS_IN_MAIN = """
import sys
import fourierformers
from conftest import tiny_config

class MyClassifier(fourierformers.GFNetForSequenceClassification):
    pass

MyClassifier(tiny_config("gfnet")).save_pretrained(sys.argv[1])
"""


@pytest.mark.parametrize("how", ["script", "-c"])
def test_subclass_defined_in_main_saves_the_code_of_its_base_class(how, tmp_path):
    """A script's own file (or `python -c` code, which has none) is not copied into the checkpoint: it loads with
    `trust_remote_code=True` as the nearest base class with a source file, and the user is told so."""
    script = tmp_path / "train_secret.py"
    script.write_text(SUBCLASS_IN_MAIN)
    command = [sys.executable, str(script)] if how == "script" else [sys.executable, "-c", SUBCLASS_IN_MAIN]
    environment = {**os.environ, "PYTHONPATH": os.path.dirname(__file__)}
    result = subprocess.run(
        [*command, str(tmp_path / "saved")], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MyClassifier is defined in `__main__`" in result.stderr
    assert "as GFNetForSequenceClassification" in result.stderr
    saved = tmp_path / "saved"
    assert not (saved / script.name).exists()
    assert {"modeling_gfnet.py", "configuration_gfnet.py", "model.safetensors"} <= set(os.listdir(saved))
    auto_map = json.loads((saved / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForSequenceClassification"] == "modeling_gfnet.GFNetForSequenceClassification"


@pytest.mark.parametrize("imports", [
    "from fourierformers import (\n    GFNetConfig as Config,\n    GFNetForSequenceClassification,\n)\n",
    # the subpackage's __init__.py was saved as the flat folder's __init__.py, and `.configuration` did not exist
    "from fourierformers.configuration import GFNetConfig as Config\n"
    "from fourierformers import GFNetForSequenceClassification\n",
])
def test_subclass_in_a_module_of_its_own_loads_without_the_package(imports, tmp_path, monkeypatch):
    """The module's `from fourierformers import ...` was copied as it was, so the checkpoint needed the package, and
    AutoModel was not mapped: each name is now imported from the flat copy of its defining module."""
    (tmp_path / "user_code").mkdir()
    (tmp_path / "user_code" / "my_models.py").write_text(
        f"{imports}\n\nclass MyClassifier(GFNetForSequenceClassification):\n    config_class = Config\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "user_code"))
    my_models = importlib.import_module("my_models")
    folder = tmp_path / "saved"
    save_checkpoint("gfnet", "ForSequenceClassification", folder, model=my_models.MyClassifier(tiny_config("gfnet")))
    assert (folder / "my_models.py").read_text().startswith(
        "from .configuration_gfnet import GFNetConfig as Config\n"
        "from .modeling_gfnet import GFNetForSequenceClassification\n\n"
    )
    auto_map = json.loads((folder / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForSequenceClassification"] == "my_models.MyClassifier"
    assert auto_map["AutoModel"] == "modeling_gfnet.GFNetModel"
    assert auto_map["AutoConfig"] == "configuration_gfnet.GFNetConfig"
    loaded = load_without_package(tmp_path, [f"{folder}=AutoModelForSequenceClassification"])["saved"]
    assert loaded["model_class"] == "MyClassifier" and loaded["model_module"] == "transformers_modules"
    assert max(loaded["main"], loaded["hidden"], loaded["resaved"]) <= 1e-6, loaded
    assert not (folder / "__init__.py").exists()


TYPED_SUBCLASS_LOADER = BLOCK_PACKAGE + r"""
folder = Path(sys.argv[1])
model = transformers.AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
inputs, expected = load_file(folder / "inputs.safetensors"), load_file(folder / "expected.safetensors")
with torch.no_grad():
    difference = (model(**inputs).logits - expected["main"]).abs().max().item()
try:
    transformers.AutoModel.from_pretrained(folder, trust_remote_code=True)
    backbone_error = None
except ValueError as error:
    backbone_error = str(error)
print(json.dumps({"model_class": type(model).__name__, "config_class": type(model.config).__name__,
                  "difference": difference, "backbone_error": backbone_error}))
"""


def test_subclass_with_a_model_type_of_its_own_loads_without_the_package(tmp_path, monkeypatch):
    """A config subclass of its own model type that AutoConfig does not know (transformers' guide to custom models
    registers the classes for the Auto classes only): the model builds, and its checkpoint loads with its own Auto
    class in a process without the package, where that type is not registered either. The family's classes, which
    take the family's config, are not mapped: AutoModel refuses the config, as it does a BERT subclass's."""
    (tmp_path / "user_code").mkdir()
    (tmp_path / "user_code" / "typed_models.py").write_text(
        "from fourierformers import GFNetConfig, GFNetForSequenceClassification\n\n\n"
        "class MyConfig(GFNetConfig):\n    model_type = 'my_gfnet'\n\n\n"
        "class MyClassifier(GFNetForSequenceClassification):\n    config_class = MyConfig\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "user_code"))
    typed_models = importlib.import_module("typed_models")
    model = typed_models.MyClassifier(tiny_config_of(typed_models.MyConfig, "gfnet"))
    folder = tmp_path / "saved"
    save_checkpoint("gfnet", "ForSequenceClassification", folder, model=model)
    assert json.loads((folder / "config.json").read_text())["auto_map"] == {
        "AutoConfig": "typed_models.MyConfig", "AutoModelForSequenceClassification": "typed_models.MyClassifier"
    }
    loaded = load_without_package(tmp_path, [str(folder)], TYPED_SUBCLASS_LOADER)
    assert loaded["model_class"] == "MyClassifier" and loaded["config_class"] == "MyConfig"
    assert loaded["difference"] <= 1e-6
    assert "Unrecognized configuration class" in loaded["backbone_error"]


def test_a_family_class_given_a_subclass_config_maps_no_auto_class_for_the_model(tmp_path, monkeypatch, caplog):
    """transformers refuses to map a class to another config class than its own: the checkpoint of a family class
    built with a subclass config of its own type maps only that config, and the user is told to subclass the head."""
    (tmp_path / "user_code").mkdir()
    (tmp_path / "user_code" / "config_only.py").write_text(
        "from fourierformers import GFNetConfig\n\n\nclass OwnConfig(GFNetConfig):\n    model_type = 'own_gfnet'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "user_code"))
    config_only = importlib.import_module("config_only")
    model = model_class("gfnet", "ForSequenceClassification")(tiny_config_of(config_only.OwnConfig, "gfnet"))
    with caplog.at_level("WARNING", logger=portable_checkpoint.__name__):
        model.save_pretrained(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["auto_map"] == {
        "AutoConfig": "config_only.OwnConfig"
    }
    assert "GFNetForSequenceClassification takes GFNetConfig, not the model's OwnConfig" in caplog.text


@pytest.mark.parametrize("by_name", [True, False])
def test_subclass_importing_the_package_by_name_is_saved_with_a_warning(by_name, tmp_path, monkeypatch, caplog):
    """A docstring showing an import is not one (the warning matched the docstring's text)."""
    (tmp_path / "user_code").mkdir()
    module = f"user_module_{by_name}"
    (tmp_path / "user_code" / f"{module}.py").write_text(
        ("import fourierformers\n\n\nclass MyClassifier(fourierformers.GFNetForSequenceClassification):\n" if by_name
         else "from fourierformers import GFNetForSequenceClassification\n\n\n"
              "class MyClassifier(GFNetForSequenceClassification):\n")
        + '    """Use it as\n\n    import fourierformers\n    from fourierformers import GFNetConfig\n    """\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path / "user_code"))
    model = importlib.import_module(module).MyClassifier(tiny_config("gfnet"))
    with caplog.at_level("WARNING", logger=portable_checkpoint.__name__):
        model.save_pretrained(tmp_path / "saved")
    warned = f"{module}.py imports fourierformers or one of its modules by name" in caplog.text
    assert warned == by_name
    assert ("loads with `trust_remote_code=True` only where fourierformers is installed" in caplog.text) == by_name


def test_two_modules_of_one_file_name_are_refused(tmp_path, monkeypatch):
    """The flat folder holds one file per name: the user's configuration_gfnet.py replaced the package's."""
    (tmp_path / "user_code").mkdir()
    (tmp_path / "user_code" / "configuration_gfnet.py").write_text("from fourierformers import GFNetConfig\n")
    (tmp_path / "user_code" / "clash.py").write_text(
        "from .configuration_gfnet import GFNetConfig\nfrom fourierformers import GFNetForSequenceClassification\n\n\n"
        "class MyClassifier(GFNetForSequenceClassification):\n    config_class = GFNetConfig\n"
    )
    (tmp_path / "user_code" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    model = importlib.import_module("user_code.clash").MyClassifier(tiny_config("gfnet"))
    with pytest.raises(ValueError, match=r"Two modules would be saved as configuration_gfnet.py .*Rename one"):
        model.save_pretrained(tmp_path / "saved")


@pytest.mark.parametrize("source,expected", [
    ("import os; from fourierformers import GFNetConfig\n",
     "import os; from .configuration_gfnet import GFNetConfig\n"),
    ("if TYPE_CHECKING: from fourierformers import GFNetConfig, AFNOConfig\n",
     "if TYPE_CHECKING: from .configuration_gfnet import GFNetConfig; from .configuration_afno import AFNOConfig\n"),
    # a form feed is a line break to str.splitlines, not to ast: every later statement was replaced one line off
    ("\x0c\ndef f():\n    from fourierformers import (\n        GFNetModel as Base,  # the family\n    )\n",
     "\x0c\ndef f():\n    from .modeling_gfnet import GFNetModel as Base\n"),
    ("x = 'é'; from fourierformers import AFNOModel\r\n", "x = 'é'; from .modeling_afno import AFNOModel\r\n"),
])
def test_package_imports_are_rewritten_within_their_statement(source, expected):
    """Whole lines were replaced, so code sharing a line with the import was lost."""
    rewritten, _ = portable_checkpoint.without_imports_from_packages(source)
    assert rewritten == expected
    ast.parse(rewritten)


@pytest.mark.parametrize("head", HEADS)
def test_model_card_describes_the_checkpoint(head, tmp_path):
    config = tiny_config("fnet_hybrid", num_hidden_layers=3, **IMAGE_FIELDS.get(head, {}))
    model = model_class("fnet_hybrid", head)(config)
    model.save_pretrained(tmp_path)
    card = (tmp_path / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers\n")
    assert f"# {type(model).__name__}" in card
    assert "`['fourier', 'attention', 'attention']` (fourier ×1, attention ×2)" in card
    assert f"{model.num_parameters():,}" in card
    assert f"{type(model)._auto_class}.from_pretrained(\"path/to/this/checkpoint\", trust_remote_code=True)" in card
    assert ("labels | LABEL_0, LABEL_1, LABEL_2" in card) == head.endswith("Classification")
    tag = PIPELINE_TAGS[head]
    assert (f"\npipeline_tag: {tag}\n" in card) if tag else "pipeline_tag" not in card
    image_rows = [
        "| image size | 8 × 8 px, 3 channels |", "| patch size | 2 × 2 |", "| token grid (FFT size) | 4 × 4 |"
    ]
    text_rows = ["| max sequence length (FFT length) | 24 |", f"| vocabulary | {config.vocab_size} |"]
    assert all((row in card) == (head in IMAGE_FIELDS) for row in image_rows)
    assert all((row in card) != (head in IMAGE_FIELDS) for row in text_rows)


def test_model_card_lists_the_models_tags(tmp_path):
    """Tags added with `add_model_tags` were left out (transformers' own card lists them)."""
    model = model_class("gfnet", "Model")(tiny_config("gfnet"))
    model.add_model_tags(["sentiment", "gfnet"])
    model.save_pretrained(tmp_path)
    assert "\ntags:\n- fourierformers\n- gfnet\n- sentiment\n" in (tmp_path / "README.md").read_text()


@pytest.mark.parametrize("image", [False, True])
def test_model_card_of_a_backbone_names_the_pipeline_of_its_inputs(image, tmp_path):
    """An image backbone's card said feature-extraction, the text pipeline (it needs a tokenizer)."""
    model_class("gfnet", "Model")(tiny_config("gfnet", **(IMAGE_FIELDS["ForImageClassification"] if image else {})))\
        .save_pretrained(tmp_path)
    tag = "image-feature-extraction" if image else "feature-extraction"
    assert f"\npipeline_tag: {tag}\n" in (tmp_path / "README.md").read_text()


@pytest.mark.parametrize("condition_type,shape", [
    ("cross_attention", "(batch_size, condition_length, 12)"), ("adaln_zero", "(batch_size, 12)"),
])
def test_model_card_of_a_conditioned_model_names_its_condition(condition_type, shape, tmp_path):
    """The card named the text-classification pipeline, which cannot pass the condition every call needs."""
    config = tiny_config("gfnet", condition_type=condition_type, condition_size=12)
    model_class("gfnet", "ForSequenceClassification")(config).save_pretrained(tmp_path)
    card = (tmp_path / "README.md").read_text()
    assert "pipeline_tag" not in card
    assert f"| conditioning | `{condition_type}` on a condition of 12 channels |" in card
    pooled = "pooled " * (condition_type == "adaln_zero")
    assert f"Every call also needs a {pooled}`condition` of shape {shape}" in card


def test_model_card_of_a_hierarchical_image_model_lists_its_stages(tmp_path):
    config = tiny_config("gfnet", image_size=16, patch_size=2, hidden_sizes=[16, 32], depths=[1, 1])
    model_class("gfnet", "ForImageClassification")(config).save_pretrained(tmp_path)
    card = (tmp_path / "README.md").read_text()
    assert "| stage widths / depths | [16, 32] / [1, 1] |" in card
    assert "| token grid (FFT size) per stage | 8 × 8 → 4 × 4 |" in card
    assert "| pooling | mean |" in card  # images have no CLS token


def test_model_card_is_not_overwritten(tmp_path):
    (tmp_path / "README.md").write_text("my own card")
    model_class("gfnet", "Model")(tiny_config("gfnet")).save_pretrained(tmp_path)
    assert (tmp_path / "README.md").read_text() == "my own card"
    assert load_file(tmp_path / "model.safetensors")


def test_a_generated_model_card_follows_the_model_saved_over_it_and_an_edited_one_is_kept(tmp_path):
    model_class("gfnet", "Model")(tiny_config("gfnet")).save_pretrained(tmp_path)
    assert "pipeline_tag: feature-extraction" in (tmp_path / "README.md").read_text()
    model_class("gfnet", "ForTokenClassification")(tiny_config("gfnet")).save_pretrained(tmp_path)
    card = (tmp_path / "README.md").read_text()
    assert "pipeline_tag: token-classification" in card and "feature-extraction" not in card
    edited = card.replace("## Intended use", "## Intended use\n\nTags people in our support tickets.")
    (tmp_path / "README.md").write_text(edited)
    model_class("gfnet", "ForSequenceClassification")(tiny_config("gfnet")).save_pretrained(tmp_path)
    assert (tmp_path / "README.md").read_text() == edited


def test_a_backbone_loads_without_the_package_as_its_card_says(tmp_path):
    """transformers 5.25's AutoBackbone.from_pretrained fails on a local folder, so a backbone's card loads its class
    from the saved sources; that code, run as written in a process without the package, gives the saved maps."""
    folder = tmp_path / "backbone"
    config = tiny_config("gfnet", image_size=16, patch_size=2, hidden_sizes=[16, 32], depths=[1, 1],
                         out_features=["stem", "stage2"])
    model = model_class("gfnet", "Backbone")(config).eval()
    model.save_pretrained(folder)
    pixel_values = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        feature_maps = model(pixel_values=pixel_values).feature_maps
    save_file({"pixel_values": pixel_values, **{f"map{i}": f.contiguous() for i, f in enumerate(feature_maps)}},
              folder / "io.safetensors")
    assert 'AutoBackbone.from_pretrained("path/to/this/checkpoint"' not in (folder / "README.md").read_text()
    report = load_without_package(tmp_path, [str(folder)], script=CARD_LOADER)
    assert report["model_class"] == "GFNetBackbone" and report["model_module"] == "transformers_modules"
    assert report["out_features"] == ["stem", "stage2"] and report["difference"] <= 1e-6
