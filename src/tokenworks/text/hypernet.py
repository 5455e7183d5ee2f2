"""The P29 (ZeTT) hypernetwork: a new token's decomposition -> its input (and output) embedding.

    hn = ZettHypernetwork.for_model(model)                  # untrained, sized for this LM
    e_in, e_out = hn(parts, source_in, source_out)         # parts (N, P) source ids, -1 = pad

Architecture (after ZeTT's hypernetwork): the source embeddings of the parts (input and output
embeddings concatenated for an untied LM) are standardized per dimension with the source
embedding statistics, projected to the hidden size (linear + residual MLP block), given a
learned position embedding, run through a small pre-norm Transformer encoder,
and the state at the first position goes through a residual MLP block and a linear layer to
the embedding(s), which are rescaled to the source embeddings' per-dimension mean and std.
The source embeddings are an *input* (as in ZeTT), so one hypernetwork serves one LM.

Written by hand because no library ships it; the encoder is ``torch.nn.TransformerEncoder``.
Decompositions run in groups of equal length, so no position is ever padded (ZeTT pads every
token to a fixed surface-form length; the result is the same, the cost several times lower).

Deviations: ZeTT uses a RoBERTa encoder (3 layers at the LM's width) and can embed a language
id and predict an output bias; this one has no language id and no bias (the LMs here have
none), and its depth is 2 by default instead of 3 (a CPU budget; the width is the LM's, as in ZeTT).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tokenworks.checks import check_int
from tokenworks.io import atomic_dir, load_json, load_tensors, save_tensors

__all__ = ["HypernetConfig", "ZettHypernetwork"]

CONFIG = "hypernet.json"
WEIGHTS = "hypernet.safetensors"


@dataclass(kw_only=True)
class HypernetConfig:
    """Shape of a hypernetwork. ``dim``/``vocab_size``/``untied`` come from the LM; the width
    defaults to the LM's ``dim``, the heads to width // 64 (at least 1) and the MLP to twice the
    width, as in ZeTT."""

    dim: int
    vocab_size: int
    untied: bool = False
    hidden_size: int | None = None
    layers: int = 2
    heads: int | None = None
    intermediate_size: int | None = None
    max_parts: int = 64

    def __post_init__(self) -> None:
        check_int("dim", self.dim, min=1)
        check_int("vocab_size", self.vocab_size, min=1)
        if self.hidden_size is None:
            self.hidden_size = self.dim
        check_int("hidden_size", self.hidden_size, min=4)
        if self.heads is None:
            self.heads = max(1, self.hidden_size // 64)
        if self.intermediate_size is None:
            self.intermediate_size = 2 * self.hidden_size
        check_int("layers", self.layers, min=1)
        check_int("heads", self.heads, min=1)
        if self.hidden_size % self.heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by heads ({self.heads})")
        check_int("intermediate_size", self.intermediate_size, min=1)
        check_int("max_parts", self.max_parts, min=1)
        if not isinstance(self.untied, bool):
            raise TypeError(f"untied must be a bool, got {self.untied!r}")


class _Block(nn.Module):
    """ZeTT's projector block: LayerNorm(x + GELU(W2 GELU(W1 x)))."""

    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, inner)
        self.fc2 = nn.Linear(inner, dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + F.gelu(self.fc2(F.gelu(self.fc1(x), approximate="tanh")), approximate="tanh"))


class ZettHypernetwork(nn.Module):
    """Maps decompositions (N, P) of source ids to embeddings (N, D) (and (N, D) output ones)."""

    def __init__(self, config: HypernetConfig, source_in: torch.Tensor | None = None, source_out: torch.Tensor | None = None) -> None:
        super().__init__()
        self.config = c = config
        n_in = c.dim * (2 if c.untied else 1)
        H = c.hidden_size
        self.in_proj = nn.Linear(n_in, H)
        self.in_block = _Block(H, c.intermediate_size)
        self.pos = nn.Embedding(c.max_parts, H)
        layer = nn.TransformerEncoderLayer(
            H, c.heads, c.intermediate_size, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, c.layers, norm=nn.LayerNorm(H), enable_nested_tensor=False)
        self.out_block = _Block(H, c.intermediate_size)
        self.out_proj = nn.Linear(H, n_in)
        nn.init.normal_(self.pos.weight, std=0.02)
        # per-dimension statistics of the source embeddings: standardize inputs, rescale outputs
        self.register_buffer("src_mean", torch.zeros(n_in))
        self.register_buffer("src_std", torch.ones(n_in))
        if source_in is not None:
            self.set_source_statistics(source_in, source_out)

    @classmethod
    def for_model(cls, model, **options) -> ZettHypernetwork:
        """An untrained hypernetwork sized for ``model`` (a Hugging Face causal LM)."""
        from tokenworks.text.transfer import lm_embeddings

        e_in, e_out = lm_embeddings(model)
        config = HypernetConfig(dim=e_in.shape[1], vocab_size=e_in.shape[0], untied=e_out is not None, **options)
        return cls(config, e_in.detach().float(), None if e_out is None else e_out.detach().float())

    @torch.no_grad()
    def set_source_statistics(self, source_in: torch.Tensor, source_out: torch.Tensor | None = None) -> None:
        src = self._source(source_in, source_out).float()
        self.src_mean.copy_(src.mean(0))
        self.src_std.copy_(src.std(0).clamp_min(1e-6))

    def _source(self, source_in: torch.Tensor, source_out: torch.Tensor | None) -> torch.Tensor:
        c = self.config
        if source_in.ndim != 2 or source_in.shape[1] != c.dim or source_in.shape[0] != c.vocab_size:
            raise ValueError(
                f"source_in must have shape ({c.vocab_size}, {c.dim}) (the LM this hypernetwork was built for), "
                f"got {tuple(source_in.shape)}"
            )
        if c.untied:
            if source_out is None or source_out.shape != source_in.shape:
                raise ValueError("this hypernetwork is for an LM with untied output embeddings: source_out (V, D) is required")
            return torch.cat([source_in, source_out], dim=-1)
        if source_out is not None:
            raise ValueError("this hypernetwork is for an LM with tied embeddings: source_out must be None")
        return source_in

    def forward(
        self, parts: torch.Tensor, source_in: torch.Tensor, source_out: torch.Tensor | None = None, *, chunk: int = 4096
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``parts`` (N, P) long, -1 = padding at the end of a row, at least one id per row ->
        (N, D), (N, D) | None. Rows run in groups of equal length, so no position is padded."""
        c = self.config
        if parts.ndim != 2 or parts.dtype != torch.long:
            raise ValueError(f"parts must be a (N, P) long tensor, got {tuple(parts.shape)} {parts.dtype}")
        src = self._source(source_in, source_out)
        lengths = (parts >= 0).sum(1)
        if parts.shape[0] and int(lengths.min()) < 1:
            raise ValueError("parts: every row needs at least one source id (padding is -1 at the end)")
        if parts.shape[0] and int(lengths.max()) > c.max_parts:
            raise ValueError(f"parts: a decomposition has {int(lengths.max())} ids, this hypernetwork takes at most max_parts={c.max_parts}")
        out = src.new_zeros((parts.shape[0], src.shape[1]))
        for n in torch.unique(lengths).tolist():
            rows = (lengths == n).nonzero().squeeze(1)
            for start in range(0, rows.numel(), chunk):
                idx = rows[start : start + chunk]
                out = out.index_put((idx,), self._embed(parts[idx, :n], src))
        out = out * self.src_std + self.src_mean
        if c.untied:
            return out[:, : c.dim], out[:, c.dim :]
        return out, None

    def _embed(self, parts: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
        """(n, P) ids, no padding -> (n, D_in) in standardized units."""
        x = (src[parts] - self.src_mean) / self.src_std  # (n, P, D_in)
        h = self.in_block(self.in_proj(x)) + self.pos.weight[: parts.shape[1]]
        h = self.encoder(h)  # (n, P, H)
        return self.out_proj(self.out_block(h[:, 0]))

    # ---- files ---------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path, *, fp16: bool = False) -> Path:
        """Write ``hypernet.json`` + ``hypernet.safetensors`` into ``path`` (atomically)."""
        with atomic_dir(path) as tmp:
            self.save_into(tmp, fp16=fp16)
        return Path(path)

    def save_into(self, path: str | Path, *, fp16: bool = False) -> None:
        """Write the two files into an existing directory (fp16 weights when asked)."""
        from tokenworks.io import atomic_write_json

        path = Path(path)
        state = {k: (v.half() if fp16 and v.is_floating_point() else v) for k, v in self.state_dict().items()}
        save_tensors(path / WEIGHTS, state)
        atomic_write_json(path / CONFIG, {"config": asdict(self.config)})

    @classmethod
    def from_pretrained(cls, path: str | Path) -> ZettHypernetwork:
        """Load a saved hypernetwork (safetensors + JSON only; weights come back in float32)."""
        path = Path(path)
        if not (path / CONFIG).is_file():
            raise FileNotFoundError(f"no hypernetwork at {path} (expected {CONFIG} and {WEIGHTS})")
        net = cls(HypernetConfig(**load_json(path / CONFIG)["config"]))
        net.load_state_dict({k: v.float() for k, v in load_tensors(path / WEIGHTS).items()})
        net.eval()
        return net
