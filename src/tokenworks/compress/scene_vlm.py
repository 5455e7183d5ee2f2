"""The compression benchmark's VLM: a tiny Hugging Face ``LlavaForConditionalGeneration``
answering questions about scenes (``tokenworks.data.scenes``), trained here on CPU.

Model: a CLIP vision tower (``CLIPVisionModel``: 2 x 2 scenes of 56 x 56 px, 4 px patches, so
196 visual tokens + [CLS]; dim 48, 5 layers), LLaVA's two-layer GELU projector, and a Llama LM
(dim 64, 4 layers, 4 heads, RoPE). Built from configs, so the attachment code
(:mod:`tokenworks.compress.llava_hook`) sees exactly what it sees in a real LLaVA.

Vision tower: initialised from the committed scene ViT (:mod:`tokenworks.compress.scene_vit`,
same layout: ``qkv`` split into q/k/v, the patch conv's bias folded into the position
embeddings, its [CLS] token as CLIP's class embedding) and fine-tuned with the LM at
``vision_lr_scale`` (0.25) times the LM's learning rate (0 keeps it frozen); the scene ViT has no
pre-LayerNorm, so CLIP's ``pre_layrnorm`` is replaced by an identity after construction
(:func:`build_scene_vlm` does it for every load; the only deviation from a stock CLIP).
Features: the last layer's patch tokens (``vision_feature_layer=-1``, [CLS] dropped).

Recipe (v2; why): the v1 model (frozen tower, one question per scene, HF's default init std 0.02
on a 64-wide LM, 1500 steps) answered 0.52 (position 0.24, count 0.49, exists 0.57, side 0.78;
400 held-out items) and every keep ratio looked alike. Diagnosis, measured (2026-12-03): the
frozen tower's last-layer patch tokens are position-aware (a linear probe tells a single
token's quadrant at 0.93; 0.97-1.0 in earlier layers) and hold the cells' content (a linear
probe on a quadrant's mean token: 0.59 over 21 classes), so the features were not the
bottleneck; with the v1 recipe, or with the question before the image, or with 8 questions per
scene, held-out accuracy was 0.47-0.50 after 300 steps. What moved it: (1) several questions
per scene in one sequence (``qa_per_scene``; ``<bos> <image> x 196 q1 a1 q2 a2 ... qk``, answers
predicted at each question's last token: k times the supervision for one prefill); (2)
``init_std`` 0.1 (HF's 0.02 leaves a 64-wide LM's attention uniform and its q/k gradients
tiny; training loss after 100 steps 1.22 vs 2.00); (3) fine-tuning the tower (0.60 vs 0.50 after
300 steps, same recipe otherwise); (4) more position / exists questions in training
(``type_weights``; the held-out set stays balanced). Result (committed model, 400 held-out
items): 0.70 (count 0.88, exists 0.72, side 0.96) but position questions are still at chance
(0.24: "empty", the majority answer, for most cells): the LM does not learn to route "what is at
top left" to one quadrant within 1200 steps, although it localises left/right for ``side``.

Recipe (v3; why): diagnosis of v2's position failure, measured (2026-12-03): (a) the data are
sound: the cells are row-major in pixels and labels, every answer equals a parse of its
question, the four places are asked equally often and "empty" is 25% of position answers
(tests/compress/test_scene_vlm_questions.py), and no question is ambiguous (one cell per
place); (b) the LM sees the visual tokens in raster order with their own RoPE positions and no
pooling before it (the projector is per token), but RoPE is 1-D: "left" is every other run of 7
tokens, which a 16-dim head's rotary frequencies do not express; (c) v2's attention from the
answer position puts 0.21-0.32 of its image mass on the asked quadrant in every layer and head
(0.25 = none), so the LM never routes by place, and its training loss on position answers stays
near their marginal entropy (2.8 nats; with the 2-D table of (1) alone: 2.87, 2.62, 2.49 after
100, 200, 300 steps, held-out position 0.30); (d) position-only training for 300 steps (a
curriculum, ``position_first``) did not help either (held-out position 0.28; its training loss
fell by copying the answers of repeated questions in a sequence), nor did one word per place
with the "?" after it (loss 2.62 after 200 steps, as with two words). Changes: (1) a learned 2-D position table added to the patch
features before the projector (:func:`add_visual_positions`, init 2-D sin-cos): a key can say
"top-left" in one linear map, whatever RoPE does; (2) the question ends with its place, as
one word (``what item is at the top-left``), so the answer is predicted *at* the place token and
its own embedding can be the attention query (one step of routing instead of gathering two
words into "?" first): position training loss 2.28 after 200 steps (2.62 without this);
(3) 900 steps (a shared machine). The other question types keep their v2 form. Result
(committed model, 400 held-out items, one training seed): 0.77 (position 0.63, count 0.88,
exists 0.63, side 0.94; v2: 0.70 / 0.24 / 0.88 / 0.72 / 0.96); position after 225 / 450 / 675
steps: 0.38 / 0.45 / 0.55, still rising. Exists fell (0.72 -> 0.63): fewer steps than v2 (1200).
Learning curve: ``snapshot_accuracy`` (by question type, at 3 earlier steps) and
``loss_curve`` in tokenworks.json.

Vocabulary: a word-level one (:data:`VOCAB`, one id per word; the questions are generated, so
no tokenizer library is needed). A prompt is ``<bos> <image> x 196`` then a six-word question;
the answer is one word predicted at the last position. Question types (:data:`QUESTION_TYPES`):
``position`` (what item is at the top-left; the place is the last word), ``count`` (how many
digits / garments / shoes / blanks are there ?), ``exists`` (is there a digit 7 ? yes/no, half the time about a digit present),
``side`` (which side holds the shoe ? left/right/both/none; shoes = sandal, sneaker, ankle boot).

Reproduce the committed checkpoint (assets/compress/scene-vlm, fp16; it also holds the
weights at 3 earlier points of training, ``ckpt-<step>.safetensors`` (tower included, as it is
trained), for P59's alignment-vs-accuracy correlation)::

    tokenworks train scene-vlm --out assets/compress/scene-vlm
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from tokenworks.checks import check_float, check_int

__all__ = ["QUESTION_TYPES", "SceneVLMConfig", "VOCAB", "build_scene_vlm", "make_qa", "scene_vlm", "train_scene_vlm", "vlm_accuracy"]

NAME = "compress/scene-vlm"
QUESTION_TYPES = ("position", "count", "exists", "side")
_CLASS_WORDS = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")
_DIGITS = tuple(str(i) for i in range(10))
_PLACES = ("top-left", "top-right", "bottom-left", "bottom-right")  # one word per cell (v3; see the module docstring)
VOCAB = (
    ("<pad>", "<bos>", "<image>", "<eos>", "?", "what", "is", "at", "top", "bottom", "left", "right", "how", "many", "digits",
     "garments", "shoes", "blanks", "are", "there", "a", "digit", "which", "side", "holds", "the", "shoe", "yes", "no", "both",
     "none", "empty") + _CLASS_WORDS + _DIGITS + _PLACES + ("item",)
)  # fmt: skip
WORD = {w: i for i, w in enumerate(VOCAB)}
PAD, BOS, IMAGE, EOS = 0, 1, 2, 3
SHOES = (5, 7, 9)


@dataclass(kw_only=True)
class SceneVLMConfig:
    """Size and training recipe (the defaults make the committed model)."""

    lm_dim: int = 64
    lm_layers: int = 4
    lm_heads: int = 4
    lm_mlp: int = 128
    init_std: float = 0.1
    qa_per_scene: int = 12
    type_weights: tuple[float, ...] = (0.4, 0.2, 0.25, 0.15)
    vision_lr_scale: float = 0.25
    visual_pos: bool = True
    position_first: int = 0
    steps: int = 900
    batch_size: int = 16
    lr: float = 4e-3
    snapshots: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("lm_dim", self.lm_dim, min=8)
        check_int("lm_layers", self.lm_layers, min=2)
        check_int("lm_heads", self.lm_heads, min=1)
        if self.lm_dim % self.lm_heads:
            raise ValueError(f"lm_heads ({self.lm_heads}) must divide lm_dim ({self.lm_dim})")
        check_int("lm_mlp", self.lm_mlp, min=1)
        check_float("init_std", self.init_std, min=0.0, min_open=True)
        check_int("qa_per_scene", self.qa_per_scene, min=1, max=16)
        self.type_weights = tuple(float(w) for w in self.type_weights)
        if len(self.type_weights) != len(QUESTION_TYPES) or min(self.type_weights) < 0 or sum(self.type_weights) <= 0:
            raise ValueError(f"type_weights must be {len(QUESTION_TYPES)} non-negative weights (not all 0), got {self.type_weights}")
        check_float("vision_lr_scale", self.vision_lr_scale, min=0.0, max=1.0)
        if not isinstance(self.visual_pos, bool):
            raise ValueError(f"visual_pos must be a bool, got {self.visual_pos!r}")
        check_int("steps", self.steps, min=1)
        check_int("position_first", self.position_first, min=0, max=self.steps)
        check_int("batch_size", self.batch_size, min=1)
        check_float("lr", self.lr, min=0.0, min_open=True)
        check_int("snapshots", self.snapshots, min=0, max=10)
        check_int("seed", self.seed, min=0)

    def fingerprint(self) -> dict:
        return {"recipe": "scene-vlm-v3", **asdict(self), "type_weights": list(self.type_weights)}


def _cell_word(label: int) -> str:
    from tokenworks.data.scenes import EMPTY

    if label == EMPTY:
        return "empty"
    return _CLASS_WORDS[label] if label < 10 else _DIGITS[label - 10]


def make_qa(labels: torch.Tensor, generator: torch.Generator, kinds: list[int] | None = None):
    """(n, 4) cell labels of 2 x 2 scenes -> (question ids (n, 6), answer ids (n,), type index (n,))."""
    from tokenworks.data.scenes import EMPTY

    qs, ans, types = [], [], []
    for i, row in enumerate(labels.tolist()):
        t = kinds[i] if kinds is not None else int(torch.randint(0, 4, (1,), generator=generator))
        r = lambda k: int(torch.randint(0, k, (1,), generator=generator))  # noqa: E731
        if t == 0:
            c = r(4)
            q, a = ["what", "item", "is", "at", "the", _PLACES[c]], _cell_word(row[c])  # the place last: see v3
        elif t == 1:
            what = r(4)
            word = ("digits", "garments", "shoes", "blanks")[what]
            test = (lambda x: 10 <= x < 20, lambda x: x < 10, lambda x: x in SHOES, lambda x: x == EMPTY)[what]
            q, a = ["how", "many", word, "are", "there", "?"], str(sum(test(x) for x in row))
        elif t == 2:
            present = [x - 10 for x in row if 10 <= x < 20]
            d = present[r(len(present))] if present and r(2) == 0 else r(10)
            q, a = ["is", "there", "a", "digit", str(d), "?"], "yes" if d + 10 in row else "no"
        else:
            left, right = any(row[c] in SHOES for c in (0, 2)), any(row[c] in SHOES for c in (1, 3))
            q, a = ["which", "side", "holds", "the", "shoe", "?"], ("none", "left", "right", "both")[left + 2 * right]
        qs.append([WORD[w] for w in q])
        ans.append(WORD[a])
        types.append(t)
    return torch.tensor(qs), torch.tensor(ans), torch.tensor(types)


def prompt_ids(questions: torch.Tensor, n_image: int = 196) -> torch.Tensor:
    """(n, Q) question ids -> (n, 1 + n_image + Q) prompt ids."""
    n = questions.shape[0]
    return torch.cat([torch.full((n, 1), BOS), torch.full((n, n_image), IMAGE), questions], 1)


def build_scene_vlm(config: SceneVLMConfig | None = None, attn_implementation: str = "sdpa"):
    """An untrained (vision tower: random) scene VLM; see the module docstring."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    from tokenworks.compress.scene_vit import SceneViTConfig

    c, v = config or SceneVLMConfig(), SceneViTConfig()
    vision = CLIPVisionConfig(hidden_size=v.dim, intermediate_size=v.dim * v.mlp_ratio, num_hidden_layers=v.depth,
                              num_attention_heads=v.heads, num_channels=1, image_size=28 * v.grid, patch_size=v.patch,
                              hidden_act="gelu", projection_dim=v.dim)  # fmt: skip
    text = LlamaConfig(vocab_size=len(VOCAB), hidden_size=c.lm_dim, intermediate_size=c.lm_mlp, num_hidden_layers=c.lm_layers,
                       num_attention_heads=c.lm_heads, num_key_value_heads=c.lm_heads, max_position_embeddings=256,
                       bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD, tie_word_embeddings=True,
                       initializer_range=c.init_std)  # fmt: skip
    cfg = LlavaConfig(vision_config=vision, text_config=text, image_token_index=IMAGE, vision_feature_layer=-1,
                      vision_feature_select_strategy="default", image_seq_length=(28 * v.grid // v.patch) ** 2)  # fmt: skip
    cfg._attn_implementation = attn_implementation
    torch.manual_seed(c.seed)
    model = LlavaForConditionalGeneration(cfg)
    model.model.vision_tower.vision_model.pre_layrnorm = torch.nn.Identity()
    if c.visual_pos:
        add_visual_positions(model, 28 * v.grid // v.patch)
    model.generation_config.pad_token_id = PAD
    return model.eval()


def sincos_2d(side: int, dim: int) -> torch.Tensor:
    """(side * side, dim) 2-D sin-cos table (MAE's ``get_2d_sincos_pos_embed``: rows in the first
    half of the channels, columns in the second; row-major grid). Written here: a few lines, no
    library in the venv exports it for torch."""
    if dim % 4:
        raise ValueError(f"dim must be a multiple of 4 for a 2-D sin-cos table, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    r, c = torch.meshgrid(torch.arange(side, dtype=torch.float64), torch.arange(side, dtype=torch.float64), indexing="ij")
    r, c = r.reshape(-1, 1) * omega, c.reshape(-1, 1) * omega
    return torch.cat([r.sin(), r.cos(), c.sin(), c.cos()], 1).float()


def _add_visual_pos(module, args):
    x = args[0]
    if x.shape[-2] != module.visual_pos.shape[0]:
        raise ValueError(f"the projector expects {module.visual_pos.shape[0]} patch tokens (its 2-D position table), got {x.shape[-2]}")
    return (x + module.visual_pos.to(x.dtype),) + tuple(args[1:])


def add_visual_positions(model, side: int) -> None:
    """Give the projector a learned (side * side, tower dim) 2-D position table, added to the
    tower's patch features before ``linear_1`` (a forward pre-hook; the table is the projector's
    parameter ``visual_pos``, so it is saved and loaded with the weights). Initialised with a 2-D
    sin-cos table at the features' scale (std about 1.5). Why: see the module docstring (v3)."""
    proj = model.model.multi_modal_projector
    dim = model.config.vision_config.hidden_size
    proj.register_parameter("visual_pos", torch.nn.Parameter(1.5 * sincos_2d(side, dim)))
    proj.register_forward_pre_hook(_add_visual_pos)


def init_vision_from_vit(model, vit) -> None:
    """Copy the scene ViT's weights into the CLIP tower (same function: see the module docstring)."""
    vm = model.model.vision_tower.vision_model
    emb = vm.embeddings
    with torch.no_grad():
        emb.patch_embedding.weight.copy_(vit.patch_embed.proj.weight)
        pos = vit.pos_embed[0].clone()
        pos[1:] += vit.patch_embed.proj.bias
        emb.position_embedding.weight.copy_(pos)
        emb.class_embedding.copy_(vit.cls_token[0, 0])
        for layer, blk in zip(vm.encoder.layers, vit.blocks):
            d = blk.attn.qkv.weight.shape[1]
            for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
                getattr(layer.self_attn, name).weight.copy_(blk.attn.qkv.weight[j * d : (j + 1) * d])
                getattr(layer.self_attn, name).bias.copy_(blk.attn.qkv.bias[j * d : (j + 1) * d])
            layer.self_attn.out_proj.load_state_dict(blk.attn.proj.state_dict())
            layer.layer_norm1.load_state_dict(blk.norm1.state_dict())
            layer.layer_norm2.load_state_dict(blk.norm2.state_dict())
            layer.mlp.fc1.load_state_dict(blk.mlp.fc1.state_dict())
            layer.mlp.fc2.load_state_dict(blk.mlp.fc2.state_dict())
        vm.post_layernorm.load_state_dict(vit.norm.state_dict())


def pixels(images: torch.Tensor) -> torch.Tensor:
    """Scenes in [0, 1] -> the tower's input (the scene ViT's normalisation)."""
    return (images - 0.5) / 0.5


def qa_batch(n: int, *, split: str, generator: torch.Generator, kinds: list[int] | None = None):
    """(pixel_values, input_ids, answers, types) for ``n`` fresh scenes."""
    from tokenworks.data.scenes import make_scenes

    x, y = make_scenes(n, split=split, grid=2, generator=generator)
    q, a, t = make_qa(y, generator, kinds)
    return pixels(x), prompt_ids(q), a, t


def train_sequences(n: int, k: int, *, generator: torch.Generator, type_weights=(1.0, 1.0, 1.0, 1.0)):
    """Training batch with ``k`` questions about each of ``n`` fresh scenes in one sequence:
    ``<bos> <image> x 196 q1 a1 q2 a2 ... qk`` -> (pixel_values, input_ids, answers (n, k), the
    positions (k,) whose logits predict them). The first question sits exactly where the
    benchmark's single question does; the later ones reuse the prefill of the same image."""
    from tokenworks.data.scenes import make_scenes

    x, y = make_scenes(n, split="train", grid=2, generator=generator)
    parts, answers, at = [torch.full((n, 1), BOS), torch.full((n, 196), IMAGE)], [], []
    w = torch.tensor(type_weights, dtype=torch.float)
    for j in range(k):
        q, a, _ = make_qa(y, generator, torch.multinomial(w, n, replacement=True, generator=generator).tolist())
        parts.append(q)
        at.append(sum(p.shape[1] for p in parts) - 1)
        answers.append(a)
        if j < k - 1:
            parts.append(a[:, None])
    return pixels(x), torch.cat(parts, 1), torch.stack(answers, 1), torch.tensor(at)


def held_out_qa(n: int, seed: int = 4321):
    """The fixed held-out QA set (test-split items; question types balanced in turn)."""
    g = torch.Generator().manual_seed(seed)
    return qa_batch(n, split="test", generator=g, kinds=[i % 4 for i in range(n)])


def _trainable(model, config: SceneVLMConfig) -> dict[str, torch.Tensor]:
    sd = model.state_dict()
    return sd if config.vision_lr_scale > 0 else {k: v for k, v in sd.items() if not k.startswith("model.vision_tower")}


def train_scene_vlm(out: str | Path, config: SceneVLMConfig | None = None, *, ckpt_dir=None, device: str = "cpu",
                    fp16: bool = True, eval_n: int = 400, init_vision: bool = True) -> dict:  # fmt: skip
    """Train projector + LM on fresh scene QA (vision tower frozen); save weights, snapshots, accuracy.
    ``init_vision=False`` keeps the random tower (smoke tests: no scene ViT needed)."""
    from tokenworks.compress.scene_vit import scene_vit
    from tokenworks.io import save_tensors
    from tokenworks.models.store import write_model_info
    from tokenworks.train import TrainConfig, train

    config = config or SceneVLMConfig()
    model = build_scene_vlm(config)
    if init_vision:
        init_vision_from_vit(model, scene_vit())
    model.model.vision_tower.requires_grad_(config.vision_lr_scale > 0)
    vision = [p for p in model.model.vision_tower.parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in model.named_parameters() if not n.startswith("model.vision_tower")]}]
    groups += [{"params": vision, "lr_scale": config.vision_lr_scale}] if vision else []
    snap_at = {round(config.steps * (i + 1) / config.snapshots) for i in range(config.snapshots)} - {config.steps}
    snaps: dict[int, dict] = {}

    def batch_fn(step, g):
        if step in snap_at:  # weights after `step` updates, for P59's alignment-vs-accuracy across training
            snaps[step] = {k: v.detach().clone() for k, v in _trainable(model, config).items()}
        weights = (1.0, 0.0, 0.0, 0.0) if step < config.position_first else config.type_weights  # curriculum: position first
        return train_sequences(config.batch_size, config.qa_per_scene, generator=g, type_weights=weights)

    def loss_fn(m, batch):
        px, ids, a, at = batch
        m.model.vision_tower.train(config.vision_lr_scale > 0)
        logits = m(input_ids=ids, pixel_values=px).logits[:, at]
        loss = F.cross_entropy(logits.flatten(0, 1), a.flatten())
        return loss, {"acc_q1": float((logits[:, 0].argmax(-1) == a[:, 0]).float().mean())}

    tc = TrainConfig(steps=config.steps, lr=config.lr, warmup=min(100, config.steps), weight_decay=0.01, seed=config.seed,
                     device=device, desc="scene VLM")  # fmt: skip
    result = train(model, loss_fn, batch_fn, tc, ckpt_dir=ckpt_dir, params=groups)
    model.to("cpu").eval()
    acc = vlm_accuracy(model, eval_n)
    out = Path(out)
    half = (lambda d: {k: v.half() for k, v in d.items()}) if fp16 else (lambda d: d)
    save_tensors(out / "model.safetensors", half(model.state_dict()))
    snap_acc = {}
    for step, sd in sorted(snaps.items()):
        save_tensors(out / f"ckpt-{step}.safetensors", half(sd))
        m2 = build_scene_vlm(config)
        m2.load_state_dict({**model.state_dict(), **sd})
        snap_acc[str(step)] = vlm_accuracy(m2, eval_n)  # the learning curve on held-out QA, by question type
    params = sum(p.numel() for p in model.parameters())
    every = max(1, len(result.history) // 50)
    curve = [[s, round(v, 4)] for s, v in result.history[::every]]
    write_model_info(out, config.fingerprint(), test_accuracy=acc, snapshot_accuracy=snap_acc, params=params,
                     train_loss=result.final_loss, train_seconds=round(result.seconds, 1), loss_curve=curve)  # fmt: skip
    return {"test_accuracy": acc, "snapshot_accuracy": snap_acc, "params": params}


def answer_logits(model, px, ids, batch: int = 100) -> torch.Tensor:
    """(n, vocab) logits of the answer (last position)."""
    with torch.no_grad():
        return torch.cat([model(input_ids=i, pixel_values=p).logits[:, -1] for p, i in zip(px.split(batch), ids.split(batch))])


def accuracy_by_type(pred: torch.Tensor, answers: torch.Tensor, types: torch.Tensor) -> dict[str, float]:
    ok = (pred == answers).float()
    out = {"all": float(ok.mean())}
    for i, t in enumerate(QUESTION_TYPES):
        if bool((types == i).any()):
            out[t] = float(ok[types == i].mean())
    return out


def vlm_accuracy(model, n: int = 400) -> dict[str, float]:
    """Answer accuracy on ``n`` held-out QA items, overall and per question type."""
    px, ids, a, t = held_out_qa(n)
    return accuracy_by_type(answer_logits(model, px, ids).argmax(-1), a, t)


def load_scene_vlm(path: Path, config: SceneVLMConfig | None = None, snapshot: int | None = None, attn_implementation="sdpa"):
    from tokenworks.io import load_tensors

    model = build_scene_vlm(config, attn_implementation)
    sd = {k: v.float() for k, v in load_tensors(path / "model.safetensors").items()}
    if snapshot is not None:
        sd.update({k: v.float() for k, v in load_tensors(path / f"ckpt-{snapshot}.safetensors").items()})
    model.load_state_dict(sd)
    return model.eval().requires_grad_(False)


def scene_vlm(config: SceneVLMConfig | None = None, *, train_if_missing: bool = True, attn_implementation: str = "sdpa"):
    """The frozen benchmark VLM (cache or committed assets; trained if missing)."""
    config = config or SceneVLMConfig()
    path = scene_vlm_dir(config, train_if_missing=train_if_missing)
    return load_scene_vlm(path, config, attn_implementation=attn_implementation)


def scene_vlm_dir(config: SceneVLMConfig | None = None, *, train_if_missing: bool = True) -> Path:
    from tokenworks.models.store import load_or_train

    config = config or SceneVLMConfig()

    def train_fn(out: Path, run: Path) -> None:
        train_scene_vlm(out, config, ckpt_dir=run)

    return load_or_train(NAME, config.fingerprint(), train_fn, train_if_missing=train_if_missing, command="tokenworks train scene-vlm")
