"""``tokenworks generate`` (a PNG grid from a trained image generator) and ``tokenworks train
gen-<name>`` (the generators behind the ``image-generation`` suite, committed under
``assets/generate/``)."""


from pathlib import Path
from typing import Annotated, Optional

import typer

from tokenworks.cli.main import app, console, device_option, fail, float_option, out_option, overwrite_option, train_app
from tokenworks.generate.train import GENERATORS, RECIPES


def _train_command(name: str):
    def cmd(
        out: Annotated[Optional[Path], out_option(f"Write here instead of the cache (e.g. assets/generate/{name})")] = None,
        steps: Annotated[Optional[int], typer.Option(help="Training steps (default: the recipe's, 700; xAR 500; the tiny one's 2)", min=1, max=100_000)] = None,
        tiny: Annotated[bool, typer.Option("--tiny", help="A seconds-long configuration of the same recipe (smoke test)")] = False,
        device: Annotated[str, device_option()] = "cpu",
        overwrite: Annotated[bool, overwrite_option()] = False,
    ) -> None:
        from dataclasses import replace

        from tokenworks.cli.decode import _train_into
        from tokenworks.generate.train import _fingerprint, default_config, tiny_config, train_image_generator

        config = tiny_config() if tiny else default_config(name)
        config = replace(config, steps=steps) if steps is not None else config
        import hashlib

        def fn(tmp, runs):  # the run folder hashes the recipe (and the tokenizer's weights): after the --out checks
            run = hashlib.sha256(repr(_fingerprint(name, config)).encode()).hexdigest()[:12]
            return train_image_generator(name, tmp, config, ckpt_dir=Path(runs) / run, device=device)

        key = f"generate/{name}" + ("-tiny" if tiny else "") + (f"-{steps}steps" if steps is not None else "")
        target, info = _train_into(out, overwrite, key, fn)
        console.print(f"saved to {target}: held-out loss {info['held_out_loss']:.3f}, {info['params']} parameters")

    method, tok, _ = RECIPES[name]
    cmd.__doc__ = f"Train the image generator {name} ({method} over the {tok} tokenizer's tokens of Fashion-MNIST)."
    return cmd


for _name in RECIPES:
    train_app.command(f"gen-{_name}")(_train_command(_name))


@app.command("generate")
def generate_cmd(
    model: Annotated[str, typer.Option(help=f"A generator folder, or a committed generator: {', '.join(GENERATORS)}")] = "maskgit-patch2d",
    out: Annotated[Path, out_option("Folder to write grid.png (rows = classes) and samples.json into")] = Path("generated"),
    per_class: Annotated[int, typer.Option(help="Images per class (columns)", min=1, max=64)] = 8,
    steps: Annotated[int, typer.Option(help="Decoding steps (AR: ignored; xAR: flow steps per cell)", min=1, max=4096)] = 8,
    cfg: Annotated[Optional[float], float_option("Classifier-free guidance scale (default: the model's)", min=0.0, max=100.0)] = None,
    seed: Annotated[int, typer.Option(min=0, max=2**31 - 1)] = 0,
    overwrite: Annotated[bool, overwrite_option()] = False,
) -> None:
    """Generate images of every Fashion-MNIST class with a trained generator and write a PNG grid."""
    import json

    import torch

    from tokenworks.generate.base import ImageGenerator
    from tokenworks.generate.evaluate import image_grid, save_png
    from tokenworks.generate.train import image_generator, load_tokenizer
    from tokenworks.io import atomic_dir, prepare_output

    prepare_output(out, overwrite=overwrite)
    try:
        if model in GENERATORS:
            gen = image_generator(model, train_if_missing=False)
        elif not Path(model).is_dir():
            raise FileNotFoundError(f"expected a generator folder or one of {', '.join(GENERATORS)}, got {model!r}")
        else:
            gen = ImageGenerator.load(Path(model))
        tok = load_tokenizer(gen.tokenizer)
    except (FileNotFoundError, ValueError, KeyError) as e:
        fail(str(e), "--model")
    if cfg is not None:
        gen.cfg = cfg
    labels = torch.arange(gen.num_classes).repeat_interleave(per_class)
    res = gen.generate(labels, steps=steps, seed=seed)
    images = gen.decode(res.tokens, tok)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        save_png(image_grid(images, gen.num_classes), tmp / "grid.png")
        (tmp / "samples.json").write_text(json.dumps({"model": model, "steps": steps, "seed": seed, "cfg": gen.cfg, "nfe": res.nfe,
                                                      "ms_per_image": 1000 * res.seconds, "labels": labels.tolist()}, indent=1))  # fmt: skip
    console.print(f"wrote {out / 'grid.png'}: {len(labels)} images, {res.nfe:g} network evaluations each")
