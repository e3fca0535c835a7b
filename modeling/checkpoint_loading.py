"""What `from_pretrained` and `save_pretrained` of the fourierformers models check around transformers' own loading:
which config fields a built model keeps, whether a checkpoint folder fits the requested class and config (with a
message naming the fields that differ), and the realignment of memory-mapped weights."""

import contextlib
import inspect
import json
import threading
from pathlib import Path

from safetensors import SafetensorError, safe_open
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.utils import logging

logger = logging.get_logger(__name__)


# Config fields that decide parameter shapes: where a requested config differs from the checkpoint's.
SHAPE_FIELDS = (
    "vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size", "max_position_embeddings",
    "type_vocab_size", "num_labels", "mixer_layout", "position_embedding_type", "embedding_projection",
    "pooler_projection", "afno_num_blocks", "afno_hidden_size_factor", "afno_num_modes", "afno_kept_modes",
    "num_attention_heads", "image_size", "patch_size", "num_channels", "spatial_dims", "patch_stride",
    "packing_strategy", "centered_patches", "patch_embed_rank", "hidden_sizes", "depths", "num_output_channels",
    "condition_type", "condition_size",
)
# Config fields whose values the built model keeps (shapes, FFT grids, patches, branches, norms, activations,
# residual wiring, pooling, FFT normalisation): a later change is refused, as the layers would go on computing the
# built function and a saved config would describe another. The vocabulary and the length are checked against the
# embeddings and FFTs themselves (`resize_token_embeddings` changes the vocabulary), the classes against the
# classifier when a head is saved (`SpectralPreTrainedModel._check_head_unchanged`). Dropout rates are left out, as
# in transformers' models: the built Dropout modules keep theirs, and a changed rate changes only how a model
# loaded from the saved config trains.
BUILT_FIELDS = (
    *(name for name in SHAPE_FIELDS if name not in ("vocab_size", "max_position_embeddings", "num_labels")),
    "patch_shape", "fourier_norm", "hidden_act", "layer_norm_eps", "norm_type", "norm_first", "mixer_residual",
    "layer_scale_init_value", "embedding_layer_norm", "final_layer_norm", "pooling", "filter_activation",
    "afno_activation", "afno_sparsity_threshold",
)
CONFIG_LOADING_KWARGS = ("cache_dir", "revision", "local_files_only", "token", "subfolder")
# `PreTrainedModel.save_pretrained`'s own keywords: with push_to_hub=True, the others are options of create_repo.
SAVE_PRETRAINED_KWARGS = frozenset(inspect.signature(PreTrainedModel.save_pretrained).parameters)


def realign_memory_mapped_tensors(model):
    """Copy every CPU parameter and buffer that is not 64-byte aligned into memory of its own.

    transformers leaves a loaded model's tensors in the memory-mapped safetensors file, where each tensor starts right
    after the previous one: after a 3-float bias the rest are only 4-byte aligned. BLAS adds up a matrix-vector
    product over a misaligned matrix in another order, so a reloaded model's output on a one-token input differed from
    the saved model's by about 3e-7. torch allocates on 64 bytes, so aligned copies compute exactly as before saving.
    Parameters keep their identity (tied weights stay tied)."""
    for module in model.modules():
        for tensors in (module._parameters, module._buffers):
            for name, tensor in tensors.items():
                if tensor is None or tensor.device.type != "cpu" or tensor.data_ptr() % 64 == 0:
                    continue
                if isinstance(tensor, nn.Parameter):
                    tensor.data = tensor.data.clone()
                else:
                    tensors[name] = tensor.clone()


_muted_in_this_thread = threading.local()  # logger name -> how many `warnings_of_reading_configs_muted` hold it


def _not_muted_in_this_thread(record):
    return not getattr(_muted_in_this_thread, record.name, 0)


@contextlib.contextmanager
def warnings_of_reading_configs_muted(config_class):
    """Mute the warnings that reading a saved `config_class` logs (fields dropped, another format) while a check
    reads a checkpoint's config a second time: `from_pretrained` reads it too, and each warning is logged once.
    Muted in the calling thread only, by a filter: the logger's `disabled` flag is shared by every thread, and two
    loads saving and restoring it at once could leave it set for good."""
    name = config_class.drop_ignored_fields.__module__
    logging.get_logger(name).addFilter(_not_muted_in_this_thread)  # added once
    setattr(_muted_in_this_thread, name, getattr(_muted_in_this_thread, name, 0) + 1)
    try:
        yield
    finally:
        setattr(_muted_in_this_thread, name, getattr(_muted_in_this_thread, name) - 1)


def validate_checkpoint(model_class, pretrained_model_name_or_path, kwargs):
    """Checks before `from_pretrained` builds anything, for a checkpoint folder on disk: a path that cannot be a
    hub id (absolute, `./`, `../`) must exist (`OSError`); its safetensors weights, and the index and every shard
    of sharded ones, must be readable (`OSError` naming the file: truncated downloads and copies fail here rather
    than deep in the loader); and its `config.json` must be of `model_class`'s model type (`of_family`), or, given a
    `config`, of a type that AutoConfig knows of the family or of that config's own (`ValueError` naming both and
    the class to use)."""
    if pretrained_model_name_or_path is None:
        return
    path = Path(pretrained_model_name_or_path)
    if not path.exists():
        if path.is_absolute() or str(pretrained_model_name_or_path).startswith(("./", "../")):
            raise OSError(f"No checkpoint folder at {path}: the directory does not exist.")
        return
    expected = model_class.config_class.model_type
    config = kwargs.get("config")
    if isinstance(config, PretrainedConfig) and not config_serves(config, model_class.config_class):
        raise ValueError(
            f"`config` is a {config.model_type!r} config, but {model_class.__name__} needs a {expected!r} one "
            f"({model_class.config_class.__name__})."
        )
    folder = path / kwargs.get("subfolder", "")
    index_file = folder / "model.safetensors.index.json"
    weight_files = [folder / "model.safetensors"]
    # transformers loads model.safetensors where there is one, whatever index is beside it (a sharded save followed
    # by an unsharded one into the same folder leaves the index behind), and reads the index only without it.
    if index_file.is_file() and not weight_files[0].is_file():
        weight_files = [folder / name for name in shard_names(index_file)]
        missing = [weight_file.name for weight_file in weight_files if not weight_file.is_file()]
        if missing:
            raise OSError(
                f"{index_file} lists the shard {missing[0]}, which is not in {folder}: the checkpoint was copied or "
                "downloaded incompletely. Copy, download or save it again."
            )
    for weight_file in weight_files:
        if weight_file.is_file():
            try:
                with safe_open(weight_file, framework="pt"):
                    pass
            except SafetensorError as error:
                raise OSError(
                    f"Cannot read the weights in {weight_file} ({error}): the file is truncated or corrupt. Copy, "
                    "download or save the checkpoint again."
                ) from error
    config_file = folder / "config.json"
    try:
        saved_fields = json.loads(config_file.read_text())
    except (OSError, ValueError):
        return  # no readable config.json: transformers' own error says so
    if not isinstance(saved_fields, dict):
        return
    model_type = saved_fields.get("model_type")
    if isinstance(config, PretrainedConfig):
        # An Auto class picked the model class from `config=`: the config, not the class, is what to change. A type
        # that AutoConfig does not know (a subclass's, loaded with `trust_remote_code`) must be that of the config
        # given (which serves the model class) or of a class it extends.
        if model_type in CONFIG_MAPPING:
            another_family = not of_family(model_type, model_class.config_class)
        else:
            another_family = model_type not in {getattr(cls, "model_type", None) for cls in type(config).__mro__}
        if another_family:
            raise ValueError(
                f"`config` is a {config.model_type!r} config, but {path} holds a {model_type!r} checkpoint; its "
                f"weights would not be used. Pass a {model_type!r} config, or none (config.json gives it)."
            )
    elif not of_family(model_type, model_class.config_class):
        loader = f"{model_class._auto_class}.from_pretrained" if model_class._auto_class else "the matching class"
        raise ValueError(
            f"{path} holds a {model_type!r} checkpoint, but {model_class.__name__} loads {expected!r} checkpoints "
            f"only; its weights would not be used. Load it with {loader}, which picks the class from config.json."
        )
    warn_of_another_fft_length(model_class.config_class, config_file, saved_fields, kwargs)


def of_family(model_type, config_class):
    """Whether configs of `model_type` serve models of `config_class`: its own model type, or one registered with
    AutoConfig for a subclass or a superclass of it (a custom variant, `class MyConfig(GFNetConfig): model_type =
    "my_gfnet"` registered as in transformers' guide to custom models, and the family it extends). Another type that
    AutoConfig does not know is not: nothing says what its checkpoints hold (`config_serves` judges a config object
    of such a type by its class)."""
    if model_type == config_class.model_type:
        return True
    if model_type not in CONFIG_MAPPING:
        return False
    registered = CONFIG_MAPPING[model_type]
    return issubclass(registered, config_class) or issubclass(config_class, registered)


def config_serves(config, config_class):
    """Whether the config object `config` serves models of `config_class`: of a model type that `of_family` accepts
    (a registered custom variant, or the family a custom variant's model extends), or an instance of `config_class`
    whose type AutoConfig does not know (an unregistered subclass, or one loaded with `trust_remote_code`, which that
    process's AutoConfig does not know either). A subclass claiming a registered type of another family is not."""
    model_type = type(config).model_type
    unknown_subclass = isinstance(config, config_class) and model_type not in CONFIG_MAPPING
    return unknown_subclass or of_family(model_type, config_class)


def shard_names(index_file):
    """The sorted shard file names that a `model.safetensors.index.json` maps weights to; `OSError` naming the file
    where it is not JSON with a `weight_map` of names to shard file names."""
    try:
        weight_map = json.loads(index_file.read_text())["weight_map"]
        names = set(weight_map.values())
        if not all(isinstance(name, str) for name in names):
            raise TypeError(f"shard names must be strings, got {sorted(map(repr, names))}")
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise OSError(
            f"Cannot read the weight index {index_file} ({type(error).__name__}: {error}): it must be JSON with a "
            "`weight_map` from weight names to shard files. Copy, download or save the checkpoint again."
        ) from error
    return sorted(names)


def config_loading_kwargs(kwargs):
    """The keywords of a `from_pretrained` call that say where and how to read a config (`CONFIG_LOADING_KWARGS`)."""
    return {key: kwargs[key] for key in CONFIG_LOADING_KWARGS if key in kwargs}


def requested_config(config_class, kwargs):
    """The `config=` of a `from_pretrained` call as an object: the one given, the one at a path (transformers reads it
    with the other keywords as overrides; read here without them), or None."""
    config = kwargs.get("config")
    if config is None or isinstance(config, PretrainedConfig):
        return config
    with warnings_of_reading_configs_muted(config_class):
        return config_class.from_pretrained(config, **config_loading_kwargs(kwargs))


def warn_of_another_fft_length(config_class, config_file, saved_fields, kwargs):
    """Warn when a text checkpoint (its `config_file`, holding `saved_fields`) is loaded with another
    `max_position_embeddings` (a keyword, or `config=` as an object or a path) that its weights still fit: without
    learned positions or global filters, whose sizes would not match, nothing in the load report says that the Fourier
    and AFNO mixers now transform over another length, so that the model computes another function of the same
    weights. The saved config is read only when the lengths differ."""
    requested = getattr(requested_config(config_class, kwargs), "max_position_embeddings", None)
    requested = kwargs.get("max_position_embeddings", requested)
    saved_length = saved_fields.get("max_position_embeddings", config_class.max_position_embeddings)
    if requested is None or requested == saved_length:
        return
    with warnings_of_reading_configs_muted(config_class):
        saved = config_class.from_json_file(config_file)
    if saved.is_vision or requested == saved.max_position_embeddings:
        return
    mixers = saved.mixers_used
    if saved.position_embedding_type != "absolute" and "global_filter" not in mixers and mixers & {"fourier", "afno"}:
        logger.warning(
            f"Loading with max_position_embeddings={requested} instead of the checkpoint's "
            f"{saved.max_position_embeddings}: the spectral mixers transform over that length, so every output differs "
            "from the saved model's, even for inputs that fit both. Fine-tune the model at the new length."
        )


def as_saved(value):
    """A config value as its JSON file holds it: tuples as lists (`to_dict` and `update` turn (16, 16) into
    [16, 16])."""
    if isinstance(value, (list, tuple)):
        return [as_saved(item) for item in value]
    if isinstance(value, dict):
        return {key: as_saved(item) for key, item in value.items()}
    return value


def public_fields(config):
    """A config's fields without the private ones (`_name_or_path`, which AutoConfig sets and the config classes do
    not, `_attn_implementation`, ...)."""
    return {key: value for key, value in config.to_dict().items() if not key.startswith("_")}


def size_mismatch_message(model_class, pretrained_model_name_or_path, kwargs):
    """Why the checkpoint's weights do not fit: the shape-deciding config fields (`SHAPE_FIELDS`) in which the
    requested config (`config=`, an object or a path, and keyword overrides) differs from the checkpoint's; or, where
    the requested config is the checkpoint's own, that the weights do not fit it."""
    loading = config_loading_kwargs(kwargs)
    saved = model_class.config_class.from_pretrained(pretrained_model_name_or_path, **loading)
    requested = kwargs.get("config")
    # every keyword that names a config attribute, as transformers applies them (`id2label` sets num_labels)
    overrides = {
        key: value for key, value in kwargs.items() if hasattr(saved, key) and key not in CONFIG_LOADING_KWARGS
    }
    if not isinstance(requested, PretrainedConfig):
        source = pretrained_model_name_or_path if requested is None else requested
        requested = model_class.config_class.from_pretrained(source, **loading, **overrides)
    differing = [name for name in SHAPE_FIELDS if getattr(saved, name, None) != getattr(requested, name, None)]
    if not differing and not overrides and public_fields(requested) == public_fields(saved):
        return (
            f"The weights in {pretrained_model_name_or_path} do not fit the {model_class.__name__} that its own "
            "config.json describes: the config was edited after saving, or was saved by a version of fourierformers "
            "whose fields built other shapes (the packing strategies before format 2, see any warning above). "
            "`ignore_mismatched_sizes=True` would re-initialise those weights, so the model would not be the saved "
            "one: restore the config.json saved with the weights, or fine-tune from the weights that fit."
        )
    checkpoint = ", ".join(f"{name}={getattr(saved, name, None)!r}" for name in differing)
    wanted = ", ".join(f"{name}={getattr(requested, name, None)!r}" for name in differing)
    return (
        f"The weights in {pretrained_model_name_or_path} do not fit the requested {model_class.__name__}: the "
        f"checkpoint has {checkpoint or 'other parameter shapes'}, the requested config {wanted or 'differs'}. Load "
        "it without overriding these fields, or pass `ignore_mismatched_sizes=True` to re-initialise the weights "
        "that do not fit (e.g. a classifier with another num_labels)."
    )
