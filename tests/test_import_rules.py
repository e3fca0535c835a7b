"""The import rules that keep saved checkpoints loadable with `trust_remote_code=True`: transformers copies a model
file and its single-dot sibling imports into one flat folder, and `save_pretrained` rewrites absolute config
imports into sibling imports (`modeling/portable_checkpoint.py`). Anything else breaks a checkpoint silently."""

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODELING = sorted(path for path in (REPO / "modeling").glob("*.py") if path.name != "__init__.py")
CONFIGURATION = sorted(path for path in (REPO / "configuration").glob("*.py") if path.name != "__init__.py")
# What a user loading a checkpoint without fourierformers is known to have: transformers and what it needs.
THIRD_PARTY = {"torch", "transformers", "numpy", "safetensors"}


def top_level_imports(tree):
    """Import nodes outside `try:` blocks (imports of optional extras belong in `try:`)."""
    pending = list(tree.body)
    while pending:
        node = pending.pop(0)
        if isinstance(node, ast.Try):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        pending.extend(ast.iter_child_nodes(node))


def relative_import_problem(node, folder):
    """What is wrong with a relative import in `folder`, or None: only `from .module import names` of a sibling."""
    if node.level != 1 or node.module is None or "." in node.module:
        dots = "." * node.level
        return f"`from {dots}{node.module or ''} import ...`: only `from .sibling_module import name` is copied"
    if not (folder / f"{node.module}.py").exists():
        return f"`from .{node.module} import ...`: no {node.module}.py in {folder.name}/"
    return None


@pytest.mark.parametrize("path", MODELING + CONFIGURATION, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_imports_survive_the_flat_checkpoint_folder(path):
    in_modeling = path.parent.name == "modeling"
    for node in top_level_imports(ast.parse(path.read_text(), filename=str(path))):
        where = f"{path.parent.name}/{path.name}:{node.lineno}"
        if isinstance(node, ast.ImportFrom) and node.level:
            problem = relative_import_problem(node, path.parent)
            assert problem is None, f"{where}: {problem}"
            continue
        modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module]
        for module in modules:
            package = module.partition(".")[0]
            if package == "fourierformers":
                assert isinstance(node, ast.ImportFrom), f"{where}: `import {module}` cannot be rewritten on save"
                assert in_modeling, f"{where}: configuration/ must not import {module} (use `from .sibling import`)"
                parts = module.split(".")
                assert len(parts) == 3 and parts[1] == "configuration" and parts[2].startswith("configuration_"), (
                    f"{where}: from modeling/ only `from fourierformers.configuration.configuration_x import XConfig` "
                    f"is allowed, got `from {module} import ...`"
                )
                assert (REPO / "configuration" / f"{parts[2]}.py").exists(), f"{where}: no configuration/{parts[2]}.py"
            else:
                assert package in sys.stdlib_module_names or package in THIRD_PARTY, (
                    f"{where}: `{module}` may be missing where the checkpoint is loaded; allowed outside `try:` are "
                    f"the standard library and {sorted(THIRD_PARTY)}"
                )


def test_module_names_are_unique_across_folders():
    names = [path.name for path in MODELING + CONFIGURATION]
    assert len(names) == len(set(names)), sorted(name for name in names if names.count(name) > 1)
