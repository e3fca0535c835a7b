"""fourierformers: GFNet, AFNO and FNet-hybrid, attention-free spectral encoders for the Hugging Face ecosystem.

This file is the top of the import package `fourierformers` (pyproject maps the repository root onto it);
`fourierformers.configuration` and `fourierformers.modeling` are the folders of the same names. Importing the
package registers every family with the transformers Auto classes.
"""

from importlib.metadata import PackageNotFoundError, version

from .configuration import *  # noqa: F403
from .configuration import __all__ as _configuration_all
from .modeling import *  # noqa: F403
from .modeling import __all__ as _modeling_all

try:
    __version__ = version("fourierformers")
except PackageNotFoundError:
    __version__ = "0.0.0"

__all__ = [*_configuration_all, *_modeling_all]
