"""Training and loading of the motion models: tokenizer, classifier (fd_local features) and the
generators over tokens. Each is trained once by ``tokenworks train motion-...`` (resumable, through
:func:`tokenworks.train.train`), kept in the cache or the committed ``assets/motion/...``, and
found by its recipe's fingerprint (:mod:`tokenworks.models.store`).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from tokenworks.checks import check_int
from tokenworks.data.motion import FPS, LABELS, load_motion
from tokenworks.motion.classifier import ClassifierConfig, MotionClassifier
from tokenworks.motion.tokenizer import DOWNSAMPLE, MotionTokenizer, TokenizerConfig, mpjpe

__all__ = [
    "GeneratorConfig",
    "GENERATORS",
    "decode_tokens",
    "label_text_embeddings",
    "motion_classifier",
    "motion_generator",
    "motion_tokenizer",
    "token_dataset",
    "train_generator",
    "train_motion_classifier",
    "train_motion_tokenizer",
]

VERSION = 2
GENERATORS = {  # name -> (registered method, options)
    "ar": ("motion-ar", {}),
    "mmm": ("mmm", {}),
    "bamm": ("bamm", {}),
    "m2dm": ("m2dm", {"importance": "data"}),
    "m2dm-uniform": ("m2dm", {"importance": "uniform"}),
}


def _run(run: Path, recipe) -> Path:
    """A run folder per recipe, so that a changed recipe never meets an old checkpoint."""
    import json

    blob = json.dumps(asdict(recipe) if hasattr(recipe, "__dataclass_fields__") else recipe, sort_keys=True, default=str)
    return Path(run) / hashlib.sha256(blob.encode()).hexdigest()[:12]


def _stats(x: np.ndarray, lengths: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    valid = np.arange(x.shape[1])[None] < lengths[:, None]
    f = x[valid]
    return torch.tensor(f.mean(0)), torch.tensor(f.std(0) + 1e-3)


def _crops(x: torch.Tensor, lengths: torch.Tensor, crop: int, batch: int, g: torch.Generator) -> torch.Tensor:
    """Random ``crop``-frame slices of the windows (features stay in the window's heading frame,
    as the tokenizer meets them when it encodes a whole window)."""
    ok = torch.nonzero(lengths >= crop)[:, 0]
    i = ok[torch.randint(0, len(ok), (batch,), generator=g)]
    starts = (torch.rand(batch, generator=g) * (lengths[i] - crop + 1).float()).long()
    return torch.stack([x[a, s : s + crop] for a, s in zip(i.tolist(), starts.tolist())])


# ----------------------------------------------------------------------------- tokenizer
def train_motion_tokenizer(out: str | Path, config: TokenizerConfig, *, ckpt_dir=None, device: str = "cpu") -> dict:
    from tokenworks.models.store import write_model_info
    from tokenworks.train import TrainConfig, train

    data = load_motion("train", augmentations=config.augmentations, seed=config.seed)
    x, lengths = torch.tensor(data.features), torch.tensor(data.lengths)
    torch.manual_seed(config.seed)
    tok = MotionTokenizer(config)
    tok.mean.copy_(_stats(data.features, data.lengths)[0])
    tok.std.copy_(_stats(data.features, data.lengths)[1])

    def batch_fn(step, g):
        return _crops(x, lengths, config.crop, config.batch_size, g)

    def loss_fn(m, b):
        b = b.to(device)
        rec, _, aux = m(b)
        feat = ((rec - b) / m.std).abs().mean()
        err = mpjpe(rec, b)
        return feat + err + aux, {"mpjpe": float(err.detach())}

    tc = TrainConfig(steps=config.steps, lr=config.lr, warmup=min(50, config.steps), seed=config.seed, device=device,
                     desc="motion tokenizer", checkpoint_every=max(100, config.steps // 5))  # fmt: skip
    result = train(tok, loss_fn, batch_fn, tc, ckpt_dir=ckpt_dir)
    tok.to("cpu").eval()
    test = load_motion("test")
    info = {"test_mpjpe_m": evaluate_tokenizer(tok, test.features, test.lengths), "train_seconds": round(result.seconds, 1),
            "params": sum(p.numel() for p in tok.parameters()), "codebook_size": tok.codebook_size,
            "bits_per_second": tok.bits_per_second(FPS), "history": [list(h) for h in result.history[:: max(1, len(result.history) // 100)]]}  # fmt: skip
    tok.save(out)
    write_model_info(out, _tok_fingerprint(config), **info)
    return info


@torch.no_grad()
def evaluate_tokenizer(tok: MotionTokenizer, features: np.ndarray, lengths: np.ndarray, *, relative: bool = False) -> float:
    """MPJPE (metres) of decode(encode(x)) over the valid frames of every window (``relative``:
    root-relative joints)."""
    errs, counts = [], []
    for L in sorted(set(lengths.tolist())):
        sel = lengths == L
        x = torch.tensor(features[sel, :L])
        rec = tok(x)[0]
        errs.append(float(mpjpe(rec, x, relative=relative)) * sel.sum())
        counts.append(sel.sum())
    return float(sum(errs) / sum(counts))


def _tok_fingerprint(config: TokenizerConfig) -> dict:
    return {"kind": "motion-tokenizer", "version": VERSION, "config": asdict(config)}


def motion_tokenizer(config: TokenizerConfig | None = None, *, train_if_missing: bool = True, device: str = "cpu") -> MotionTokenizer:
    from tokenworks.models.store import load_model

    config = config or TokenizerConfig()
    return load_model("motion/tokenizer", _tok_fingerprint(config), MotionTokenizer.load,
                      lambda out, run: train_motion_tokenizer(out, config, ckpt_dir=_run(run, _tok_fingerprint(config)), device=device),
                      train_if_missing=train_if_missing, command="tokenworks train motion-tokenizer")  # fmt: skip


# ----------------------------------------------------------------------------- classifier
def train_motion_classifier(out: str | Path, config: ClassifierConfig, *, ckpt_dir=None, device: str = "cpu") -> dict:
    from tokenworks.models.store import write_model_info
    from tokenworks.train import TrainConfig, train

    data = load_motion("train", augmentations=config.augmentations, seed=config.seed)
    x, lengths, labels = torch.tensor(data.features), torch.tensor(data.lengths), torch.tensor(data.labels)
    torch.manual_seed(config.seed)
    clf = MotionClassifier(config)
    mean, std = _stats(data.features, data.lengths)
    clf.mean.copy_(mean)
    clf.std.copy_(std)

    def batch_fn(step, g):
        i = torch.randint(0, len(labels), (config.batch_size,), generator=g)
        return x[i], lengths[i], labels[i]

    def loss_fn(m, b):
        return torch.nn.functional.cross_entropy(m(b[0].to(device), b[1]), b[2].to(device))

    tc = TrainConfig(steps=config.steps, lr=config.lr, warmup=min(50, config.steps), seed=config.seed, device=device, weight_decay=0.01,
                     desc="motion classifier", checkpoint_every=max(100, config.steps // 5))  # fmt: skip
    result = train(clf, loss_fn, batch_fn, tc, ckpt_dir=ckpt_dir)
    clf.to("cpu").eval()
    test = load_motion("test")
    with torch.no_grad():
        pred = clf(torch.tensor(test.features), torch.tensor(test.lengths)).argmax(-1).numpy()
    info = {"test_accuracy": float((pred == test.labels).mean()), "test_windows": len(test), "train_seconds": round(result.seconds, 1),
            "history": [list(h) for h in result.history[:: max(1, len(result.history) // 100)]]}  # fmt: skip
    clf.save(out)
    write_model_info(out, _clf_fingerprint(config), **info)
    return info


def _clf_fingerprint(config: ClassifierConfig) -> dict:
    return {"kind": "motion-classifier", "version": VERSION, "config": asdict(config)}


def motion_classifier(config: ClassifierConfig | None = None, *, train_if_missing: bool = True, device: str = "cpu") -> MotionClassifier:
    from tokenworks.models.store import load_model

    config = config or ClassifierConfig()
    return load_model("motion/classifier", _clf_fingerprint(config), MotionClassifier.load,
                      lambda out, run: train_motion_classifier(out, config, ckpt_dir=_run(run, _clf_fingerprint(config)), device=device),
                      train_if_missing=train_if_missing, command="tokenworks train motion-classifier")  # fmt: skip


# ----------------------------------------------------------------------------- tokens
@torch.no_grad()
def token_dataset(tok: MotionTokenizer, split: str, *, augmentations: int = 0, seed: int = 0):
    """(tokens (N, 12) with PAD = -1 past each length, lengths in tokens (N,), labels (N,))."""
    data = load_motion(split, augmentations=augmentations, seed=seed)
    N, T = data.features.shape[:2]
    tokens = torch.full((N, T // DOWNSAMPLE), -1, dtype=torch.long)
    for L in sorted(set(data.lengths.tolist())):
        sel = np.nonzero(data.lengths == L)[0]
        tokens[sel, : L // DOWNSAMPLE] = tok.encode(torch.tensor(data.features[sel, :L])).long()
    return tokens, torch.tensor(data.lengths // DOWNSAMPLE), torch.tensor(data.labels)


@torch.no_grad()
def decode_tokens(tok: MotionTokenizer, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Generated tokens (B, N) and lengths (tokens) -> features (B, 4N, 45), zero past the length."""
    B, N = tokens.shape
    out = torch.zeros(B, N * DOWNSAMPLE, tok.decoder[-1].out_channels)
    for L in sorted(set(lengths.tolist())):
        sel = torch.nonzero(lengths == L)[:, 0]
        out[sel, : L * DOWNSAMPLE] = tok.decode(tokens[sel, :L].clamp(0, tok.codebook_size - 1))
    return out


@lru_cache(maxsize=1)
def label_text_embeddings() -> torch.Tensor:
    """MiniLM embeddings (11, 384) of the labels' text descriptions."""
    from tokenworks.vision.captions import embed_captions

    return embed_captions(list(LABELS.values())).float()


# ----------------------------------------------------------------------------- generators
@dataclass(kw_only=True)
class GeneratorConfig:
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    augmentations: int = 2
    seed: int = 0
    options: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_int("steps", self.steps, min=1)
        check_int("batch_size", self.batch_size, min=1)


def _check_generator(name: str) -> tuple[str, dict]:
    if name not in GENERATORS:
        raise ValueError(f"generator must be one of {', '.join(GENERATORS)}, got {name!r}")
    return GENERATORS[name]


def _tok_identity(tok_dir: Path) -> dict:
    from tokenworks.io import load_json

    sha = hashlib.sha256((tok_dir / "model.safetensors").read_bytes()).hexdigest()[:16]
    return {"fingerprint": load_json(tok_dir / "tokenworks.json", kind=dict).get("fingerprint"), "weights_sha256": sha}


def _gen_fingerprint(name: str, config: GeneratorConfig, tok_dir: Path) -> dict:
    method, options = _check_generator(name)
    return {"kind": "motion-generator", "version": VERSION, "method": method, "options": options | config.options,
            "config": asdict(config), "tokenizer": _tok_identity(tok_dir)}  # fmt: skip


def _tokenizer_dir(config: TokenizerConfig | None = None) -> Path:
    """The folder of the tokenizer made with ``config`` (the default recipe), trained if missing."""
    from tokenworks.models.store import find_model

    config = config or TokenizerConfig()
    name = "motion/tokenizer" if config == TokenizerConfig() else f"motion/tokenizer-{_run(Path('.'), config).name}"
    found = find_model(name, _tok_fingerprint(config))
    if found is None:
        from tokenworks.models.store import load_or_train

        found = load_or_train(name, _tok_fingerprint(config), lambda out, run: train_motion_tokenizer(out, config, ckpt_dir=_run(run, _tok_fingerprint(config))))
    return found


def train_generator(name: str, out: str | Path, config: GeneratorConfig, *, ckpt_dir=None, device: str = "cpu",
                    tokenizer: TokenizerConfig | None = None) -> dict:  # fmt: skip
    """Train generator ``name`` on the train tokens of the tokenizer made with ``tokenizer``
    (default recipe; trained first if missing) and save it into ``out``."""
    from tokenworks.models.store import write_model_info
    from tokenworks.registry import create
    from tokenworks.train import TrainConfig, train

    method, options = _check_generator(name)
    tok_dir = _tokenizer_dir(tokenizer)
    tok = MotionTokenizer.load(tok_dir)
    tokens, lengths, labels = token_dataset(tok, "train", augmentations=config.augmentations, seed=config.seed)
    torch.manual_seed(config.seed)
    gen = create(method, codebook_size=tok.codebook_size, max_tokens=tokens.shape[1], **(options | config.options))
    gen.set_label_embeddings(label_text_embeddings())
    if hasattr(gen, "set_code_counts"):
        gen.set_code_counts(torch.bincount(tokens[tokens >= 0], minlength=tok.codebook_size))
    pad_tokens = tokens.clamp_min(0)

    def batch_fn(step, g):
        i = torch.randint(0, len(labels), (config.batch_size,), generator=g)
        return pad_tokens[i], lengths[i], labels[i]

    def loss_fn(m, b):
        return m.loss(b[0], b[1], m.conditions(b[2]))

    tc = TrainConfig(steps=config.steps, lr=config.lr, warmup=min(100, config.steps), seed=config.seed, device=device, weight_decay=0.01,
                     desc=f"motion generator {name}", checkpoint_every=max(200, config.steps // 5))  # fmt: skip
    result = train(gen, loss_fn, batch_fn, tc, ckpt_dir=ckpt_dir)
    gen.to("cpu").eval()
    t_tok, t_len, t_lab = token_dataset(tok, "test")
    torch.manual_seed(1)
    with torch.no_grad():
        held = float(loss_fn(gen, (t_tok.clamp_min(0), t_len, t_lab)))
    info = {"held_out_loss": held, "train_seconds": round(result.seconds, 1), "params": sum(p.numel() for p in gen.parameters()),
            "train_sequences": len(labels), "history": [list(h) for h in result.history[:: max(1, len(result.history) // 100)]]}  # fmt: skip
    gen.save(out)
    write_model_info(out, _gen_fingerprint(name, config, tok_dir), **info)
    return info


def motion_generator(name: str, config: GeneratorConfig | None = None, *, train_if_missing: bool = True, device: str = "cpu"):
    from tokenworks.models.store import load_model
    from tokenworks.motion.base import MotionGenerator

    config = config or GeneratorConfig()
    fp = _gen_fingerprint(name, config, _tokenizer_dir())
    return load_model(f"motion/{name}", fp, MotionGenerator.load,
                      lambda out, run: train_generator(name, out, config, ckpt_dir=_run(run, fp), device=device),
                      train_if_missing=train_if_missing, command=f"tokenworks train motion-generator --name {name}")  # fmt: skip


def tiny_configs() -> tuple[TokenizerConfig, ClassifierConfig, GeneratorConfig]:
    """Seconds-long versions of the recipes (tests)."""
    return replace(TokenizerConfig(), steps=2, batch_size=4), replace(ClassifierConfig(), steps=2, batch_size=4), replace(GeneratorConfig(), steps=2, batch_size=4)
