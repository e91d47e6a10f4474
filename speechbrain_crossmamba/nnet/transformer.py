"""A Transformer sequence block that honours padding masks: the baseline twin of ``SBMambaBlock``.

SpeechBrain's ``SBTransformerBlock`` takes no padding mask and its encoder layers always ask for
the attention weights, which materialises the L×L matrix. This block uses PyTorch's
``nn.TransformerEncoderLayer`` (scaled-dot-product attention, flash kernels where available) and
SpeechBrain's sinusoidal ``PositionalEncoding``, so the quadratic baseline is as fast as it can be.

Authors
 * speechbrain-crossmamba contributors
"""

import torch
import torch.nn as nn
from speechbrain.lobes.models.transformer.Transformer import PositionalEncoding


def key_padding_mask(mask):
    """Turns a valid-frame mask [B, L] into PyTorch's key padding mask (True = ignore).

    Rows with no valid frame at all (e.g. a chunk made only of padding) attend to every frame
    instead, so that softmax never sees only -inf (which would give NaN); their outputs are
    padding and are never read.

    Example
    -------
    >>> key_padding_mask(torch.tensor([[True, False], [False, False]]))
    tensor([[False,  True],
            [False, False]])
    """
    if mask is None:
        return None
    return ~mask & mask.any(dim=1, keepdim=True)


class TransformerBlock(nn.Module):
    """A stack of Transformer encoder layers, ``[B, L, N] -> [B, L, N]``, with padding masks.

    Arguments
    ---------
    num_layers : int
        Number of encoder layers.
    d_model : int
        Feature size N.
    nhead : int
        Attention heads.
    d_ffn : int
        Feed-forward size.
    dropout : float
        Dropout rate.
    activation : str
        ``"relu"`` or ``"gelu"``.
    norm_before : bool
        Pre-LayerNorm layers (as SepFormer) and a final LayerNorm.
    use_positional_encoding : bool
        Add sinusoidal positions (as SepFormer).
    max_length : int
        Longest sequence the positional encoding covers.

    Example
    -------
    >>> block = TransformerBlock(num_layers=1, d_model=16, nhead=4, d_ffn=32)
    >>> x = torch.randn(2, 20, 16)
    >>> block(x, mask=torch.arange(20)[None] < torch.tensor([[20], [12]])).shape
    torch.Size([2, 20, 16])
    """

    def __init__(
        self,
        num_layers,
        d_model,
        nhead,
        d_ffn=1024,
        dropout=0.0,
        activation="relu",
        norm_before=True,
        use_positional_encoding=True,
        max_length=2500,
    ):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d_model, nhead, d_ffn, dropout, activation, batch_first=True, norm_first=norm_before
            )
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model) if norm_before else nn.Identity()
        self.pos_enc = PositionalEncoding(d_model, max_length) if use_positional_encoding else None
        self.max_length = max_length

    def forward(self, x, mask=None):
        """``x`` [B, L, N]; ``mask`` [B, L] marks valid frames (True)."""
        if self.pos_enc is not None:
            if x.shape[1] > self.max_length:
                raise ValueError(
                    f"sequence of {x.shape[1]} frames is longer than max_length={self.max_length} "
                    "of the positional encoding"
                )
            x = x + self.pos_enc(x)
        pad = key_padding_mask(mask)
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=pad)
        return self.norm(x)
