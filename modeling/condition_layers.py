"""Conditioning operators for the optional condition branch of the block (nvSubquadratic `ResidualBlock`).

Both have the interface `forward(x, condition, attn_implementation="sdpa", condition_mask=None) -> out` on
channels-last `x: (B, *grid, D)`, and return the branch output `(B, *grid, D)` that the block adds to the residual.
`condition_mask: (B, *condition_grid)` bool, True on real condition tokens, masks a padded condition (cross-attention).
"""

import torch
import torch.nn.functional as F
from torch import nn

from .spectral_layers import MultiHeadAttention


class CrossAttention(MultiHeadAttention):
    """Multi-head attention from every grid position of `x` to the tokens of `condition: (B, *condition_grid,
    condition_size)` (a sequence (B, M, C), or a grid attended as its M cells), whose channels the key and value
    projections bring to the hidden size."""

    def __init__(self, hidden_size, condition_size, num_heads, dropout=0.0):
        super().__init__(hidden_size, condition_size, num_heads, dropout)

    def forward(self, x, condition, attn_implementation="sdpa", condition_mask=None):
        condition_size = self.k_proj.in_features
        if condition.ndim < 3 or condition.shape[0] != x.shape[0] or condition.shape[-1] != condition_size:
            raise ValueError(
                f"CrossAttention takes a condition of shape (batch, *tokens, condition_size) = ({x.shape[0]}, ..., "
                f"{condition_size}) for x of shape {tuple(x.shape)}, got {tuple(condition.shape)}."
            )
        return self.attend(x, condition, condition_mask, False, attn_implementation)[0]


class AdaLNZero(nn.Module):
    """Adaptive LayerNorm with zero-initialised modulation (DiT, Peebles & Xie 2023) from a pooled condition
    `c: (B, condition_size)`: `shift, scale, gate = SiLU(c) @ modulation_weight.T + modulation_bias` and the branch
    output is `gate * (LN(x) * (1 + scale) + shift)` with a LayerNorm without affine parameters. The modulation
    starts at zero, so the branch adds nothing until it has learned to: the block starts as the unconditioned block.
    (Raw parameters rather than an `nn.Linear` child, so the model's generic Linear initialisation cannot overwrite
    the zeros.)"""

    def __init__(self, hidden_size, condition_size, eps=1e-6):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, eps=eps, elementwise_affine=False)
        self.act = nn.SiLU()
        self.modulation_weight = nn.Parameter(torch.zeros(3 * hidden_size, condition_size))
        self.modulation_bias = nn.Parameter(torch.zeros(3 * hidden_size))

    def forward(self, x, condition, attn_implementation="sdpa", condition_mask=None):
        condition_size = self.modulation_weight.shape[1]
        if condition.shape != (x.shape[0], condition_size):
            raise ValueError(
                f"AdaLNZero takes a pooled condition of shape (batch, condition_size) = ({x.shape[0]}, "
                f"{condition_size}) for x of shape {tuple(x.shape)}, got {tuple(condition.shape)}."
            )
        modulation = F.linear(self.act(condition), self.modulation_weight, self.modulation_bias)  # (B, 3D)
        shift, scale, gate = modulation.chunk(3, dim=-1)  # each (B, D)
        view = (x.shape[0], *([1] * (x.ndim - 2)), x.shape[-1])  # broadcast over the grid
        shift, scale, gate = shift.view(view), scale.view(view), gate.view(view)
        return gate * (self.norm(x) * (1 + scale) + shift)
