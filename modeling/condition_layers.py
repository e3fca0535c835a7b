"""Conditioning operators for the optional condition branch of the block (nvSubquadratic `ResidualBlock`).

Both have the interface `forward(x, condition, attn_implementation="sdpa", condition_mask=None) -> out` on
channels-last `x: (B, *grid, D)`, and return the branch output `(B, *grid, D)` that the block adds to the residual.
`condition_mask: (B, M)` bool, True on real condition tokens, masks a padded condition sequence (cross-attention).
"""

import torch
import torch.nn.functional as F
from torch import nn

from .spectral_layers import head_size, multi_head_attention, real_tokens


class CrossAttention(nn.Module):
    """Multi-head attention from every grid position of `x` to the M tokens of `condition: (B, M, condition_size)`,
    whose channels are projected to the hidden size by the key and value projections."""

    def __init__(self, hidden_size, condition_size, num_heads, dropout=0.0):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_size(hidden_size, num_heads)
        self.dropout = dropout
        self.q_proj = nn.Linear(hidden_size, hidden_size)
        self.k_proj = nn.Linear(condition_size, hidden_size)
        self.v_proj = nn.Linear(condition_size, hidden_size)
        self.out_proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, x, condition, attn_implementation="sdpa", condition_mask=None):
        shape = x.shape
        batch_size = shape[0]

        def heads(tokens):  # (B, L, D) -> (B, h, L, d)
            return tokens.view(batch_size, -1, self.num_heads, self.head_dim).transpose(1, 2)

        query = heads(self.q_proj(x.reshape(batch_size, -1, shape[-1])))  # (B, h, N, d)
        condition = real_tokens(condition, condition_mask)  # padded condition tokens cannot reach x
        key, value = heads(self.k_proj(condition)), heads(self.v_proj(condition))  # (B, h, M, d)
        dropout = self.dropout if self.training else 0.0
        key_mask = None if condition_mask is None else condition_mask[:, None, None, :]  # (B, 1, 1, M)
        context, _ = multi_head_attention(query, key, value, key_mask, dropout, False, attn_implementation)
        return self.out_proj(context.transpose(1, 2).reshape(shape))


class AdaLNZero(nn.Module):
    """Adaptive LayerNorm with zero-initialised modulation (DiT, Peebles & Xie 2023) from a pooled condition
    `c: (B, condition_size)`: `shift, scale, gate = SiLU(c) @ modulation_weight.T + modulation_bias` and the branch
    output is `gate * (LN(x) * (1 + scale) + shift)` with a LayerNorm without affine parameters. The modulation
    starts at zero (see `_init_weights`), so the branch adds nothing until it has learned to: the block starts as
    the unconditioned block. (Raw parameters rather than an `nn.Linear` child, so the model's generic Linear
    initialisation cannot overwrite the zeros.)"""

    def __init__(self, hidden_size, condition_size, eps=1e-6):
        super().__init__()
        self.norm = nn.LayerNorm(hidden_size, eps=eps, elementwise_affine=False)
        self.act = nn.SiLU()
        self.modulation_weight = nn.Parameter(torch.empty(3 * hidden_size, condition_size))
        self.modulation_bias = nn.Parameter(torch.empty(3 * hidden_size))

    def forward(self, x, condition, attn_implementation="sdpa", condition_mask=None):
        modulation = F.linear(self.act(condition), self.modulation_weight, self.modulation_bias)  # (B, 3D)
        shift, scale, gate = modulation.chunk(3, dim=-1)  # each (B, D)
        view = (x.shape[0], *([1] * (x.ndim - 2)), x.shape[-1])  # broadcast over the grid
        shift, scale, gate = shift.view(view), scale.view(view), gate.view(view)
        return gate * (self.norm(x) * (1 + scale) + shift)
