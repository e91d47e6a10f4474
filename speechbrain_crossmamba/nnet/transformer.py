"""A Transformer sequence block that honours padding masks: the baseline twin of ``SBMambaBlock``.

SpeechBrain's ``SBTransformerBlock`` takes no padding mask, and its encoder layers always ask for
the attention weights, which materialises the L×L matrix. PyTorch's ``nn.TransformerEncoderLayer``
does too at inference on CPU (its "fast path": 2.6 GB for one layer at 8000 frames). This block
builds its layers from SpeechBrain's ``MultiheadAttention`` without weights, which runs PyTorch's
``scaled_dot_product_attention`` (flash kernels where available), and ``PositionalwiseFeedForward``.
So the quadratic baseline is as fast and as lean as it can be. Sinusoidal positions are computed
on the fly (a stored table for 32 s of frames would cost 33 MB per block).

Authors
 * speechbrain-crossmamba contributors
"""

import math

import torch
import torch.nn as nn

from speechbrain.nnet.attention import (
    MultiheadAttention,
    PositionalwiseFeedForward,
)


def sinusoids(length, d_model, device=None, dtype=None):
    """Sinusoidal positional encodings (Vaswani et al.), computed on the fly.

    Arguments
    ---------
    length : int
        Frames.
    d_model : int
        Feature size.
    device : torch.device, optional
        Where to compute them.
    dtype : torch.dtype, optional
        Output dtype (default: torch's default dtype).

    Returns
    -------
    torch.Tensor
        [1, length, d_model].

    Example
    -------
    >>> sinusoids(3, 4)[0, 0]
    tensor([0., 1., 0., 1.])
    """
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(
        torch.arange(0, d_model, 2, device=device, dtype=torch.float32)
        * (-math.log(1e4) / d_model)
    )
    pe = torch.zeros(length, d_model, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: d_model // 2])
    return pe[None].to(dtype or torch.get_default_dtype())


def key_padding_mask(mask):
    """Turns a valid-frame mask [B, L] into PyTorch's key padding mask (True = ignore).

    Rows with no valid frame at all (e.g. a chunk made only of padding) attend to every frame
    instead, so that softmax never sees only -inf (which would give NaN); their outputs are
    padding and are never read.

    Arguments
    ---------
    mask : torch.Tensor or None
        [B, L] bool, True on valid frames.

    Returns
    -------
    torch.Tensor or None
        [B, L] bool, True where a key is ignored.

    Example
    -------
    >>> key_padding_mask(torch.tensor([[True, False], [False, False]]))
    tensor([[False,  True],
            [False, False]])
    """
    if mask is None:
        return None
    return ~mask & mask.any(dim=1, keepdim=True)


class TransformerLayer(nn.Module):
    """One Transformer encoder layer (self-attention, feed-forward), pre- or post-norm.

    Arguments
    ---------
    d_model, nhead, d_ffn, dropout, activation, norm_before
        As in :class:`TransformerBlock`.

    Example
    -------
    >>> TransformerLayer(16, 4, 32)(torch.randn(2, 10, 16)).shape
    torch.Size([2, 10, 16])
    """

    def __init__(
        self,
        d_model,
        nhead,
        d_ffn,
        dropout=0.0,
        activation="relu",
        norm_before=True,
    ):
        super().__init__()
        acts = {"relu": nn.ReLU, "gelu": nn.GELU}
        if activation not in acts:
            raise ValueError(
                f"activation must be 'relu' or 'gelu', got {activation!r}"
            )
        self.attn = MultiheadAttention(nhead, d_model, dropout=dropout)
        self.ffn = PositionalwiseFeedForward(
            d_ffn,
            input_size=d_model,
            dropout=dropout,
            activation=acts[activation],
        )
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.norm_before = norm_before

    def forward(self, x, key_padding=None):
        """Applies the layer.

        Arguments
        ---------
        x : torch.Tensor
            [B, L, N].
        key_padding : torch.Tensor, optional
            [B, L] bool, True where a frame is padding.

        Returns
        -------
        torch.Tensor
            [B, L, N].
        """
        h = self.norm1(x) if self.norm_before else x
        h = self.attn(
            h, h, h, key_padding_mask=key_padding, return_attn_weights=False
        )
        x = x + self.dropout(h)
        x = x if self.norm_before else self.norm1(x)
        h = self.ffn(self.norm2(x) if self.norm_before else x)
        x = x + self.dropout(h)
        return x if self.norm_before else self.norm2(x)


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
    ):
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerLayer(
                d_model, nhead, d_ffn, dropout, activation, norm_before
            )
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model) if norm_before else nn.Identity()
        self.use_positional_encoding = use_positional_encoding

    def forward(self, x, mask=None):
        """Applies the stack.

        Arguments
        ---------
        x : torch.Tensor
            [B, L, N].
        mask : torch.Tensor, optional
            [B, L] bool, True on valid frames.

        Returns
        -------
        torch.Tensor
            [B, L, N].
        """
        if self.use_positional_encoding:
            x = x + sinusoids(x.shape[1], x.shape[2], x.device, x.dtype)
        pad = key_padding_mask(mask)
        for layer in self.layers:
            x = layer(x, pad)
        return self.norm(x)
