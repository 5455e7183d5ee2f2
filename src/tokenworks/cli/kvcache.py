"""``tokenworks train kv-task-model`` and ``tokenworks kv generate``: the KV-cache family's commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tokenworks.cli.main import app, console, device_option, fail, fail_options, float_option, method_choice, out_option, overwrite_option, parse_options, train_app

kv_app = typer.Typer(help="KV-cache policies on a Hugging Face decoder: try one on your own model.", no_args_is_help=True)
app.add_typer(kv_app, name="kv")


@train_app.command("kv-task-model")
def train_kv_task_model(
    out: Annotated[Optional[Path], out_option("Write here instead of the cache (e.g. assets/kv/task-model)")] = None,
    tiny: Annotated[bool, typer.Option("--tiny", help="A seconds-long configuration of the same recipe (smoke test)")] = False,
    fp16: Annotated[bool, typer.Option("--fp16/--fp32", help="Save weights in float16 (default, for assets/)")] = True,
    device: Annotated[str, device_option()] = "cpu",
    seed: Annotated[Optional[int], typer.Option(help="Seeds the initialisation and the data order (default: the recipe's)", min=0, max=2**31 - 1)] = None,
    overwrite: Annotated[bool, overwrite_option()] = False,
) -> None:
    """Train the KV-cache benchmark's task model (resumable; checkpoints in the cache's runs/)."""
    from dataclasses import replace

    from tokenworks.io import atomic_dir, cache_dir, prepare_output
    from tokenworks.kvcache.task_model import NAME, TaskModelConfig, task_model, tiny_config, train_task_model

    config = tiny_config() if tiny else TaskModelConfig()
    if seed is not None:
        config = replace(config, seed=seed)
    if out is not None:
        prepare_output(out, overwrite=overwrite)
    if out is None and not tiny and seed is None:
        task_model(device=device)
        console.print("kv task model ready (cache or assets)")
        return
    target = out or cache_dir("models", NAME + ("-tiny" if tiny else ""))
    run = cache_dir("runs", NAME.replace("/", "-") + ("-tiny" if tiny else "") + (f"-seed{seed}" if seed is not None else ""))
    with atomic_dir(target, overwrite=overwrite, owned=out is None) as tmp:
        info = train_task_model(tmp, config, ckpt_dir=run, device=device, fp16=fp16)
    console.print(f"saved to {target}: retrieval probe {info['retrieval_probe']}, {info['params']} parameters")


@kv_app.command("generate")
def kv_generate(
    model: Annotated[str, typer.Argument(help="A local Hugging Face causal-LM folder, or 'task-model' (the benchmark's)")],
    policy: Annotated[str, typer.Option(help="A registered KV policy", parser=method_choice("kv_policy", "--policy"))] = "lazy_eviction",
    budget: Annotated[float, float_option("Fraction of the context (0 < b <= 1) or, if >= 1 and whole, a token count", min=0.0, max=1e9)] = 0.25,
    prompt: Annotated[Optional[str], typer.Option(help="The prompt text")] = None,
    prompt_file: Annotated[Optional[Path], typer.Option(help="Read the prompt from this UTF-8 file", exists=True, dir_okay=False)] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, max=100_000)] = 64,
    option: Annotated[Optional[list[str]], typer.Option(help="Policy option key=value (JSON value), repeatable; e.g. window=16")] = None,
    device: Annotated[str, device_option()] = "cpu",
) -> None:
    """Greedy-generate from PROMPT with and without the policy; print both texts, the length of
    their common prefix and the KV bytes each cache holds at the end."""
    import torch

    import tokenworks as tw
    from tokenworks.kvcache import kv_bytes

    if not model.strip():
        fail("must be a local model folder or 'task-model', got ''", "MODEL")
    if (prompt is None) == (prompt_file is None):
        fail("give exactly one of --prompt or --prompt-file", "--prompt")
    arg = "--prompt" if prompt is not None else "--prompt-file"
    if prompt_file is not None:
        try:
            prompt = prompt_file.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            fail(f"{prompt_file} is not UTF-8 text (byte {e.start})", "--prompt-file")
    if not prompt.strip():
        fail("the prompt is empty", arg)
    if budget > 1 and not float(budget).is_integer():
        fail(f"must be a fraction in (0, 1] or a whole token count, got {budget}", "--budget")
    b: float | int = int(budget) if budget >= 1 and float(budget).is_integer() and budget != 1 else budget
    try:
        pol = tw.create(policy, **({} if policy == "full" else {"budget": b}), **parse_options(option, "--option"))
    except (TypeError, ValueError) as e:  # a bad or unknown option: name it
        fail_options(e, "--option")
    if model == "task-model":
        from tokenworks.kvcache.task_model import task_model

        lm, tok = task_model(device=device, train_if_missing=False)
    else:
        from tokenworks.models.store import load_causal_lm

        lm, tok = load_causal_lm(model, device=device, arg="MODEL")
    inputs = tok(prompt, return_tensors="pt").to(device)
    n = inputs["input_ids"].shape[1]
    kw = dict(max_new_tokens=max_new_tokens, do_sample=False, return_dict_in_generate=True, pad_token_id=tok.pad_token_id)
    with torch.no_grad():
        ref = lm.generate(**inputs, **kw)
        with pol(lm):
            out = lm.generate(**inputs, **kw)
    a, c = ref.sequences[0, n:], out.sequences[0, n:]
    k = min(a.numel(), c.numel())
    diff = (a[:k] != c[:k]).nonzero()
    match = int(diff[0, 0]) if diff.numel() else k
    console.rule(f"full cache: {kv_bytes(ref.past_key_values) / 1e6:.2f} MB of keys and values at the end")
    console.print(tok.decode(a, skip_special_tokens=True), markup=False, highlight=False)
    console.rule(f"{policy} (budget {b}): {kv_bytes(out.past_key_values) / 1e6:.2f} MB")
    console.print(tok.decode(c, skip_special_tokens=True), markup=False, highlight=False)
    console.rule()
    console.print(f"prompt {n} tokens; the first {match} of {k} generated tokens agree with the full cache")
