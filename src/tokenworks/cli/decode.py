"""``tokenworks decode generate``: speculative decoding on a user's own local model folders."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tokenworks.cli.main import app, console, device_option, fail, fail_options, float_option, method_choice, out_option, overwrite_option, parse_options, train_app

decode_app = typer.Typer(help="Speculative decoding on Hugging Face causal LMs: try a method on your own models.", no_args_is_help=True)
app.add_typer(decode_app, name="decode")


def _load(folder: str, flag: str, device: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tokenworks.models.lm import quiet_loading

    if not Path(folder).is_dir():
        fail(f"{flag} must be a local model folder, got {folder!r} (nothing is downloaded)")
    try:
        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        with quiet_loading():
            lm = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).to(device).eval()
    except (OSError, ValueError) as e:
        fail(f"{flag}: cannot load a causal LM from {folder}: {e}")
    return lm, tok


@decode_app.command("generate")
def decode_generate(
    target: Annotated[str, typer.Argument(help="A local Hugging Face causal-LM folder (the model whose output is kept)")],
    draft: Annotated[Optional[str], typer.Option(help="A local draft-model folder sharing TARGET's tokenizer (methods that need one)")] = None,
    method: Annotated[str, typer.Option(help="A registered decoder (tokenworks list --kind spec_decoder)", parser=method_choice("spec_decoder", "--method"))] = "spec_sampling",
    k: Annotated[int, typer.Option(help="Draft tokens per step", min=1, max=256)] = 4,
    prompt: Annotated[Optional[list[str]], typer.Option(help="A prompt; repeat for a batch")] = None,
    prompt_file: Annotated[Optional[Path], typer.Option(help="Read one prompt per non-empty line of this UTF-8 file", exists=True, dir_okay=False)] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, max=100_000)] = 64,
    sample: Annotated[bool, typer.Option("--sample/--greedy", help="Sample (exactly the target's distribution) or decode greedily")] = False,
    temperature: Annotated[float, float_option("Sampling temperature (> 0)", min=1e-6, max=1e6)] = 1.0,
    seed: Annotated[int, typer.Option(min=0, max=2**31 - 1)] = 0,
    option: Annotated[Optional[list[str]], typer.Option(help="Method option key=value (JSON value), repeatable; e.g. max_ngram=3")] = None,
    compare: Annotated[bool, typer.Option("--compare/--no-compare", help="Also run TARGET's own greedy generate and report agreement and time")] = True,
    device: Annotated[str, device_option()] = "cpu",
) -> None:
    """Decode PROMPT(s) with METHOD on TARGET (and DRAFT); print the texts and the accepted
    lengths, target/draft forwards and time; with --compare (greedy), the target's own output."""
    import time

    import torch

    import tokenworks as tw

    if not target.strip():
        fail("must be a local model folder, got ''", "TARGET")
    if draft is not None and not draft.strip():
        fail("must be a local model folder, got ''", "--draft")
    try:
        dec = tw.create(method, k=k, **parse_options(option, "--option"))
    except (TypeError, ValueError) as e:
        fail_options(e, "--option")
    if (not prompt) == (prompt_file is None):
        fail("give --prompt (repeatable) or --prompt-file, exactly one of them", "--prompt")
    arg = "--prompt" if prompt else "--prompt-file"
    if prompt_file is not None:
        try:
            prompt = [line for line in prompt_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as e:
            fail(f"{prompt_file}: cannot read it as UTF-8 text ({e})", "--prompt-file")
    if not prompt or not all(p.strip() for p in prompt):
        fail("every prompt must be non-empty text", arg)
    if dec.needs_draft and draft is None:
        fail(f"is required for --method {method} (a local model folder sharing TARGET's tokenizer)", "--draft")
    if not dec.needs_draft and draft is not None:
        fail(f"--method {method} uses no draft model; drop it", "--draft")
    tlm, tok = _load(target, "TARGET", device)
    dlm = _load(draft, "--draft", device)[0] if draft is not None else None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    inputs = tok(prompt, return_tensors="pt", padding=True).to(device)
    try:
        out = dec.generate(tlm, inputs["input_ids"], inputs["attention_mask"], draft=dlm, max_new_tokens=max_new_tokens,
                           do_sample=sample, temperature=temperature, seed=seed, pad_token_id=tok.pad_token_id)  # fmt: skip
    except (TypeError, ValueError) as e:
        fail(str(e))
    texts = out.text(tok)
    ref = None
    if compare and not sample:
        t0 = time.perf_counter()
        with torch.no_grad():
            gen = tlm.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        ref_s = time.perf_counter() - t0
        eos = tlm.generation_config.eos_token_id
        eos = set([eos] if isinstance(eos, int) else (eos or []))
        ref = []
        for row in gen[:, inputs["input_ids"].shape[1] :].tolist():
            cut = next((i for i, t in enumerate(row) if t in eos), None)
            ref.append(row if cut is None else row[: cut + 1])
    for i, text in enumerate(texts):
        console.rule(f"prompt {i + 1}")
        console.print(text, markup=False, highlight=False)
    s = out.stats
    console.rule()
    console.print(
        f"{method} (k={k}, {'sampling' if sample else 'greedy'}): {s.new_tokens} tokens in {s.steps} steps, "
        f"{s.mean_accepted:.2f} tokens per target forward per row, acceptance {s.acceptance_rate:.2f}, "
        f"{s.target_forwards} target forwards, {s.draft_forwards} draft forwards, {s.seconds:.2f} s"
    )
    if ref is not None:
        same = sum(a == b for a, b in zip(out.tokens, ref))
        console.print(f"target's own greedy generate: {ref_s:.2f} s; {same} of {len(ref)} outputs identical to it")


def _train_into(out: Optional[Path], overwrite: bool, name: str, fn):
    """Run ``fn(folder, run_dir)`` into ``out`` (or the cache entry ``name``) atomically, with
    resumable checkpoints in the run folder of ``name``; errors end the command cleanly."""
    from tokenworks.io import atomic_dir, cache_dir, prepare_output

    if out is not None:
        prepare_output(out, overwrite=overwrite)
    target = out or cache_dir("models", name)
    try:
        with atomic_dir(target, overwrite=overwrite, owned=out is None) as tmp:
            info = fn(tmp, cache_dir("runs", name.replace("/", "-")))
    except (FileNotFoundError, TypeError, ValueError) as e:
        fail(str(e))
    return target, info


@train_app.command("decode-large-lm")
def train_decode_large_lm(
    out: Annotated[Optional[Path], out_option("Write here instead of the cache (e.g. assets/decode/large-lm)")] = None,
    tiny: Annotated[bool, typer.Option("--tiny", help="A seconds-long configuration of the same recipe (smoke test)")] = False,
    steps: Annotated[Optional[int], typer.Option(help="Training steps, both stages together (default: the recipe's 500; the tiny one's 2)", min=1, max=100_000)] = None,
    fp16: Annotated[bool, typer.Option("--fp16/--fp32", help="Save weights in float16 (default, for assets/)")] = True,
    device: Annotated[str, device_option()] = "cpu",
    overwrite: Annotated[bool, overwrite_option()] = False,
) -> None:
    """Grow the reference LM to the decoding family's large LM and train it (resumable)."""
    from dataclasses import replace

    from tokenworks.decode.large_lm import NAME, LargeLMConfig, tiny_config, train_large_lm

    config = tiny_config() if tiny else LargeLMConfig()
    if steps is not None:
        try:
            config = replace(config, steps=steps, warmup=min(config.warmup, steps))
        except ValueError as e:
            fail(str(e), "--steps")
    suffix = ("-tiny" if tiny else "") + (f"-{steps}steps" if steps is not None else "")
    target, info = _train_into(out, overwrite, NAME + suffix, lambda tmp, run: train_large_lm(tmp, config, ckpt_dir=run, device=device, fp16=fp16))
    console.print(f"saved to {target}: held-out ppl {info['held_out']['ppl']:.2f} (small: {info['held_out_small']['ppl']:.2f}), {info['params']} parameters")


@train_app.command("decode-image-ar")
def train_decode_image_ar(
    size: Annotated[str, typer.Option(help="Which model of the pair: target (4 layers, d=128) or draft (2 layers, d=64)")] = "target",
    out: Annotated[Optional[Path], out_option("Write here instead of the cache (e.g. assets/decode/image-ar-target)")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Training steps (default: the recipe's, 800 for the target, 600 for the draft; the tiny one's 2)", min=1, max=100_000)] = None,
    tiny: Annotated[bool, typer.Option("--tiny", help="A seconds-long configuration of the same recipe (smoke test)")] = False,
    device: Annotated[str, device_option()] = "cpu",
    overwrite: Annotated[bool, overwrite_option()] = False,
) -> None:
    """Train one of LANTERN's class-conditional AR models over the vq-16 image tokens (resumable)."""
    from dataclasses import replace

    from tokenworks.decode.image_ar import SIZES, tiny as tiny_config, train_image_ar

    if size not in SIZES:
        fail(f"must be one of {', '.join(SIZES)}, got {size!r}", "--size")
    config = tiny_config(size) if tiny else SIZES[size]
    if steps is not None:
        config = replace(config, steps=steps, warmup=min(config.warmup, steps))
    suffix = ("-tiny" if tiny else "") + (f"-{steps}steps" if steps is not None else "")
    target, info = _train_into(out, overwrite, f"decode/image-ar-{size}{suffix}", lambda tmp, run: train_image_ar(tmp, config, ckpt_dir=run, device=device))
    console.print(f"saved to {target}: held-out NLL {info['held_out_nll_per_token']:.3f} nats/token, {info['params']} parameters")


@train_app.command("decode-caption-vlm")
def train_decode_caption_vlm(
    out: Annotated[Optional[Path], out_option("Write here instead of the cache (e.g. assets/decode/caption-vlm)")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Training steps (default: the recipe's 500; the tiny one's 2)", min=1, max=100_000)] = None,
    tiny: Annotated[bool, typer.Option("--tiny", help="A seconds-long configuration of the same recipe (smoke test)")] = False,
    device: Annotated[str, device_option()] = "cpu",
    overwrite: Annotated[bool, overwrite_option()] = False,
) -> None:
    """Train the tiny captioning VLM (vq-16 image codes -> caption words) that FLASH drafts for."""
    from dataclasses import replace

    from tokenworks.decode.caption_vlm import NAME, CaptionVLMConfig, tiny_config, train_caption_vlm

    config = tiny_config() if tiny else CaptionVLMConfig()
    if steps is not None:
        config = replace(config, steps=steps, warmup=min(config.warmup, steps))
    suffix = ("-tiny" if tiny else "") + (f"-{steps}steps" if steps is not None else "")
    target, info = _train_into(out, overwrite, NAME + suffix, lambda tmp, run: train_caption_vlm(tmp, config, ckpt_dir=run, device=device))
    console.print(f"saved to {target}: held-out NLL {info['held_out_nll']:.3f}, exact captions {info['held_out_exact_caption']:.2f}")


@train_app.command("decode-flash-head")
def train_decode_flash_head(
    queries: Annotated[int, typer.Option(help="Compressed visual tokens (learned queries); 0: the text-only control", min=0, max=16)] = 4,
    out: Annotated[Optional[Path], out_option("Write here instead of the cache (e.g. assets/decode/flash-head-q4)")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Training steps (default: the recipe's 800)", min=1, max=100_000)] = None,
    overwrite: Annotated[bool, overwrite_option()] = False,
) -> None:
    """Self-distil FLASH's draft head on the caption VLM's greedy answers (needs the trained VLM)."""
    from tokenworks.decode.caption_vlm import train_flash_head_and_save

    recipe = {} if steps is None else {"steps": steps}
    suffix = f"-q{queries}" + (f"-{steps}steps" if steps is not None else "")
    target, arch = _train_into(out, overwrite, "decode/flash-head" + suffix, lambda tmp, run: train_flash_head_and_save(tmp, queries, recipe, ckpt_dir=run))
    console.print(f"saved to {target}: head with {arch['queries']} visual queries, k={arch['k']}")
