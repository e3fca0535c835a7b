"""Which parameters get weight decay, for `Trainer` and for plain PyTorch optimizers.

Decaying a parameter pulls it towards zero. That is right for the weight matrices of linear layers, and wrong for
parameters whose zero is not a sensible prior: norm weights, biases, LayerScale gains, fusion logits (every 1-D
parameter), position embeddings, spectral filters (a zero filter deletes the signal) and the AFNO spectral biases.

Rule: a parameter is *not* decayed when it has at most one dimension, or when the module that owns it lists its
name (relative to that module) in the class attribute `_no_weight_decay`, e.g.
`GlobalFilter._no_weight_decay = ("complex_weight",)` (the tag of nvSubquadratic's blocks, put on the class so it
survives `from_pretrained`, `to()` and parameter replacement). New layers with such parameters add the attribute.
The tag follows a parameter that `torch.nn.utils` reparametrises (`parametrize`: weight_norm, spectral_norm, ...;
`prune`; the legacy `weight_norm`) into the parameters it then stores instead.

`Trainer` builds its two parameter groups from `Trainer.get_decay_parameter_names` (transformers 5.23 has no model
hook), which only knows norms and biases by name; `SpectralTrainer` refines it with the rule above. With plain
PyTorch, or a `Trainer` given `optimizers=(optimizer, None)`, use `optimizer_param_groups`:

    optimizer = torch.optim.AdamW(optimizer_param_groups(model, weight_decay=0.05), lr=1e-3)
"""

from torch.nn.utils import parametrize
from transformers import Trainer


def stored_names(module, name):
    """The names, relative to `module`, under which the parameter `name` (`weight` or `child.weight`) is stored:
    itself, or, once torch.nn.utils has reparametrised it (it is then no parameter of its module), what is stored in
    its place: `parametrizations.<name>.original` (`original0`, `original1`, ... for several, as weight_norm's
    magnitude and direction), `<name>_orig` (pruning), `<name>_g` and `<name>_v` (the legacy weight_norm). Names
    that do not exist are dropped by the caller."""
    owner_name, _, leaf = name.rpartition(".")
    try:
        owner = module.get_submodule(owner_name)
    except AttributeError:  # a child this configuration does not build (no learned position table)
        return [name]
    prefix = f"{owner_name}." if owner_name else ""
    if leaf in dict(owner.named_parameters(recurse=False)):
        return [prefix + leaf]
    if parametrize.is_parametrized(owner, leaf):
        originals = owner.parametrizations[leaf].named_parameters(recurse=False)
        return [f"{prefix}parametrizations.{leaf}.{original}" for original, _ in originals]
    return [f"{prefix}{leaf}{suffix}" for suffix in ("_orig", "_g", "_v")]


def no_weight_decay_parameter_names(model):
    """The set of names in `model.named_parameters()` that must not be decayed."""
    names = set()
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        tagged = {
            prefix + stored for name in getattr(module, "_no_weight_decay", ()) for stored in stored_names(module, name)
        }
        for name, parameter in module.named_parameters(prefix=module_name, recurse=False):
            if parameter.ndim <= 1:
                names.add(name)
        names.update(tagged)
    return names & {name for name, _ in model.named_parameters()}


def optimizer_param_groups(model, weight_decay):
    """Two optimizer parameter groups of the trainable parameters: decayed with `weight_decay`, and not decayed."""
    excluded = no_weight_decay_parameter_names(model)
    trainable = [(name, parameter) for name, parameter in model.named_parameters() if parameter.requires_grad]
    return [
        {"params": [parameter for name, parameter in trainable if name not in excluded], "weight_decay": weight_decay},
        {"params": [parameter for name, parameter in trainable if name in excluded], "weight_decay": 0.0},
    ]


class SpectralTrainer(Trainer):
    """`Trainer` whose weight decay skips the parameters of `no_weight_decay_parameter_names` as well as the norms
    and biases `Trainer` itself excludes. Otherwise identical to `Trainer`."""

    def get_decay_parameter_names(self, model):
        excluded = no_weight_decay_parameter_names(model)
        return [name for name in super().get_decay_parameter_names(model) if name not in excluded]
