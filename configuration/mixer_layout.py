"""The `mixer_layout` of a config: which token mixer each layer uses, as plain JSON.

An entry is either the name of one mixer or a dict combining several mixers (the hybrid strategies of spectrans):

    "fourier"                                                               one mixer
    {"strategy": "adaptive", "mixers": ["fourier", "attention"], "gate": "soft" | "hard"}
    {"strategy": "multiscale", "mixers": ["global_filter", "attention"], "fusion": "add" | "concat" | "weighted"}
    {"strategy": "cascade", "mixers": ["fourier", "attention"], "share_norm": False | True}

The *alternating* strategy is the layout itself (a different entry per layer); `{"pattern": [entry, ...]}` is its
compact form, repeated to `num_hidden_layers` entries when the config is validated (created, loaded, saved or used to
build a model).
"""

import copy

MIXER_TYPES = ("fourier", "global_filter", "afno", "attention", "none")
HYBRID_STRATEGIES = {
    # strategy -> (option name, allowed values, default)
    "adaptive": ("gate", ("soft", "hard"), "soft"),
    "multiscale": ("fusion", ("add", "concat", "weighted"), "add"),
    "cascade": ("share_norm", (False, True), False),
}
COMPOSABLE_MIXERS = tuple(name for name in MIXER_TYPES if name != "none")


def expand_mixer_layout(layout, num_hidden_layers):
    """The layout as a list with one entry per layer: a `{"pattern": [...]}` dict is repeated to
    `num_hidden_layers` entries, and strategy dicts get their default option filled in. Anything else is
    returned unchanged (and checked by `validate_mixer_layout`)."""
    if isinstance(layout, dict):
        if set(layout) != {"pattern"} or not isinstance(layout["pattern"], (list, tuple)) or not layout["pattern"]:
            raise ValueError(
                "A dict `mixer_layout` must be the compact alternating form {'pattern': [entry, ...]} with a "
                f"non-empty list of entries, got {layout!r}; otherwise give a list with one entry per layer."
            )
        pattern = list(layout["pattern"])
        if num_hidden_layers % len(pattern):
            raise ValueError(
                f"`mixer_layout` pattern of {len(pattern)} entries does not divide num_hidden_layers="
                f"{num_hidden_layers}: use a pattern whose length divides the number of layers, or a full list."
            )
        layout = pattern * (num_hidden_layers // len(pattern))
    if not isinstance(layout, (list, tuple)):
        return layout
    return [_with_default_option(entry) for entry in layout]


def mixer_names(layout):
    """The set of mixer names a layout uses, looking inside strategy entries."""
    return {name for entry in layout for name in (entry["mixers"] if isinstance(entry, dict) else [entry])}


def _strategy(entry):
    """The hybrid strategy of a layout entry, or None where it is not a dict naming one (a mixer name, or an entry
    that `validate_mixer_layout` refuses: any other 'strategy', including a non-string such as 5, None or a list)."""
    strategy = entry.get("strategy") if isinstance(entry, dict) else None
    return strategy if isinstance(strategy, str) and strategy in HYBRID_STRATEGIES else None


def _with_default_option(entry):
    strategy = _strategy(entry)
    if strategy is not None:
        option, _, default = HYBRID_STRATEGIES[strategy]
        # a copy for each layer: a repeated pattern (or the caller's list) shared its `mixers`, so that changing
        # one layer's entry changed the others'
        return {**copy.deepcopy(entry), option: entry.get(option, default)}
    return entry


def validate_mixer_layout(layout, num_hidden_layers):
    """Raise `ValueError` naming the bad entry and the valid choices; return the set of mixer names used."""
    if not isinstance(layout, list):
        raise ValueError(
            f"`mixer_layout` must be a list with one entry per layer or the compact form {{'pattern': [entry, ...]}}, "
            f"got {layout!r}."
        )
    if len(layout) != num_hidden_layers:
        # also reached by a `num_hidden_layers` override of a saved mixed layout that cannot be cut or repeated
        # (`from_pretrained(path, num_hidden_layers=N)` with more layers than it has entries)
        raise ValueError(
            f"`mixer_layout` has {len(layout)} entries but `num_hidden_layers` is {num_hidden_layers}: give one entry "
            f"per layer, or the compact form {{'pattern': [entry, ...]}}. To change the number of layers of a saved or "
            f"existing config, pass a `mixer_layout` with {num_hidden_layers} entries together with "
            f"`num_hidden_layers={num_hidden_layers}`."
        )
    used = set()
    for index, entry in enumerate(layout):
        where = f"`mixer_layout[{index}]`"
        if isinstance(entry, str):
            if entry not in MIXER_TYPES:
                raise ValueError(f"{where} is {entry!r}; valid mixer names are {list(MIXER_TYPES)}.")
            used.add(entry)
            continue
        strategy = _strategy(entry)
        if strategy is None:
            raise ValueError(
                f"{where} is {entry!r}; an entry is a mixer name from {list(MIXER_TYPES)} or a dict with "
                f"'strategy' in {list(HYBRID_STRATEGIES)}."
            )
        option, allowed, _ = HYBRID_STRATEGIES[strategy]
        unknown = set(entry) - {"strategy", "mixers", option}
        if unknown:
            raise ValueError(
                f"{where} ({strategy}) has unknown keys {sorted(unknown)}; allowed keys: ['strategy', 'mixers', "
                f"{option!r}]."
            )
        mixers = entry.get("mixers")
        if (
            not isinstance(mixers, list)
            or len(mixers) < 2
            or len(set(map(str, mixers))) != len(mixers)
            or any(name not in COMPOSABLE_MIXERS for name in mixers)
        ):
            raise ValueError(
                f"{where} ({strategy}) needs 'mixers': a list of at least two different mixer names from "
                f"{list(COMPOSABLE_MIXERS)}, got {mixers!r}."
            )
        if option in entry and (entry[option] not in allowed or type(entry[option]) is not type(allowed[0])):
            raise ValueError(f"{where} ({strategy}): '{option}' must be one of {list(allowed)}, got {entry[option]!r}.")
        used.update(mixers)
    return used
