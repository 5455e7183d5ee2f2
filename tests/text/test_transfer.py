"""Embedding transfer onto a new tokenizer: the registry-wide contract, decompositions, the mean
and random baselines, and the P29 ZeTT hypernetwork (identity property, training, files)."""

import json

import pytest
import torch

import tokenworks as tw
from tokenworks.io import assets_dir
from tokenworks.text import HypernetTrainConfig, ZettHypernetwork, decompose, token_bytes, train_hypernet
from tokenworks.text.transfer import lm_embeddings

TRANSFERS = [m.name for m in tw.methods(kind="embedding_transfer")]
TINY_NET = {"hidden_size": 32, "layers": 1, "heads": 2, "intermediate_size": 64}


def make(name, model):
    """A transfer method ready for ``model`` (ZeTT needs a hypernetwork: an untrained tiny one)."""
    if name == "zett":
        return tw.create(name, hypernet=ZettHypernetwork.for_model(model, **TINY_NET))
    return tw.create(name)


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("name", TRANSFERS)
def test_contract(name, tied, source_tokenizer, target_tokenizer, make_llama):
    model = make_llama(source_tokenizer, tied=tied)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tr = make(name, model)
    e_in, e_out = tr.embeddings(model, source_tokenizer, target_tokenizer)
    V, D = len(target_tokenizer), model.config.hidden_size
    assert e_in.shape == (V, D) and e_in.dtype == torch.float32 and torch.isfinite(e_in).all()
    assert (e_out is None) == tied
    if not tied:
        assert e_out.shape == (V, D) and torch.isfinite(e_out).all()
    # same seed / same hypernetwork: same output
    again, _ = tr.embeddings(model, source_tokenizer, target_tokenizer)
    assert torch.equal(e_in, again)
    # special tokens take the source's embedding for the same token
    src_in, src_out = lm_embeddings(model)
    eos_t, eos_s = target_tokenizer.eos_token_id, source_tokenizer.eos_token_id
    assert torch.equal(e_in[eos_t], src_in[eos_s])
    # the transferred model reads and writes the target ids; the original is untouched
    new = tr.transfer(model, source_tokenizer, target_tokenizer)
    ids = torch.tensor([target_tokenizer("Permission is hereby granted (a) free", add_special_tokens=False)["input_ids"]])
    logits = new(input_ids=ids).logits
    assert logits.shape == (1, ids.shape[1], V) and torch.isfinite(logits).all()
    assert new.config.eos_token_id == eos_t and new.config.vocab_size == V
    assert torch.equal(new.get_input_embeddings().weight, e_in)
    if not tied:
        assert torch.equal(new.get_output_embeddings().weight, e_out)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_decompositions_spell_every_token_exactly(source_tokenizer, target_tokenizer):
    parts = decompose(source_tokenizer, target_tokenizer)
    tb_t, tb_s = token_bytes(target_tokenizer), token_bytes(source_tokenizer)
    # every special added token (KL3M's 13, not only those with a transformers role)
    special = {i for i, a in target_tokenizer.backend_tokenizer.get_added_tokens_decoder().items() if a.special}
    assert len(special) == 13 and set(target_tokenizer.all_special_ids) <= special
    assert len(parts) == len(target_tokenizer)
    for i, p in enumerate(parts):
        if i in special:
            assert p == ()
        else:
            assert p and b"".join(tb_s[j] for j in p) == tb_t[i]
    # onto itself every token is its own decomposition
    self_parts = decompose(source_tokenizer, source_tokenizer)
    assert all(p == (i,) for i, p in enumerate(self_parts) if i not in set(source_tokenizer.all_special_ids))


def test_mean_init_is_the_mean_of_the_parts_and_exact_on_the_same_tokenizer(source_tokenizer, target_tokenizer, make_llama):
    model = make_llama(source_tokenizer)
    src, _ = lm_embeddings(model)
    mean = tw.create("mean_init")
    e, _ = mean.embeddings(model, source_tokenizer, target_tokenizer)
    parts = decompose(source_tokenizer, target_tokenizer)
    for i, p in enumerate(parts):  # brute-force loop reference
        if p:
            ref = sum(src[j] for j in p) / len(p)
            torch.testing.assert_close(e[i], ref, rtol=1e-5, atol=1e-6)
    same, _ = mean.embeddings(model, source_tokenizer, source_tokenizer)
    assert torch.equal(same, src)


def test_random_init_matches_the_source_statistics(source_tokenizer, target_tokenizer, make_llama):
    model = make_llama(source_tokenizer, dim=64)
    src, _ = lm_embeddings(model)
    e, _ = tw.create("random_init", seed=3).embeddings(model, source_tokenizer, target_tokenizer)
    rows = [i for i, p in enumerate(decompose(source_tokenizer, target_tokenizer)) if p]
    drawn = e[rows]
    # statistical: per-dimension mean within 4 standard errors, pooled std within 10%
    se = src.std(0) / len(rows) ** 0.5
    assert ((drawn.mean(0) - src.mean(0)).abs() < 4 * se + 1e-6).float().mean() > 0.97
    assert drawn.std(0).mean().item() == pytest.approx(src.std(0).mean().item(), rel=0.1)
    other, _ = tw.create("random_init", seed=4).embeddings(model, source_tokenizer, target_tokenizer)
    assert not torch.equal(other[rows], drawn)
    lex, _ = tw.create("random_init", seed=3, copy_overlap=True).embeddings(model, source_tokenizer, source_tokenizer)
    assert torch.equal(lex[2:], src[2:])  # every ordinary token exists in the source: copied


@pytest.fixture(scope="module")
def trained_tiny_net(source_tokenizer, small_corpus, make_llama):
    model = make_llama(source_tokenizer, dim=32)
    config = HypernetTrainConfig(
        steps=4, identity_steps=200, batch_size=2, seq_len=16, vocab_sample=128, n_tokenizers=2,
        vocab_min=300, vocab_max=400, stream_tokens=2000, warmup=2, lr=3e-3, hypernet=TINY_NET,
    )  # fmt: skip
    net, info = train_hypernet(model, source_tokenizer, {"legal": small_corpus[:20], "prose": small_corpus[40:]}, config, progress=False)
    return model, net, info


def _identity_quality(net, model, ids):
    src, _ = lm_embeddings(model)
    pred, _ = net(ids[:, None], src)
    cos = torch.nn.functional.cosine_similarity(pred, src[ids], dim=-1)
    rel = (pred - src[ids]).norm(dim=-1) / src[ids].norm(dim=-1)
    return cos.mean().item(), rel.mean().item()


def test_zett_reproduces_original_embeddings_after_identity_training(trained_tiny_net, source_tokenizer):
    model, net, info = trained_tiny_net
    ids = torch.arange(2, len(source_tokenizer))  # every ordinary source token
    cos, rel = _identity_quality(net, model, ids)
    untrained_cos, _ = _identity_quality(ZettHypernetwork.for_model(model, **TINY_NET), model, ids)
    print("identity", cos, rel, untrained_cos)
    assert cos > 0.9 and rel < 0.45, (cos, rel)
    assert untrained_cos < 0.5
    assert all(torch.isfinite(torch.tensor(v)).all() for v in info.values())


def test_zett_hypernetwork_files_round_trip(trained_tiny_net, tmp_path, source_tokenizer, target_tokenizer):
    model, net, _ = trained_tiny_net
    net.save_pretrained(tmp_path / "hn", fp16=True)
    assert json.loads((tmp_path / "hn" / "hypernet.json").read_text())["config"]["hidden_size"] == 32
    a, _ = tw.create("zett", hypernet=net).embeddings(model, source_tokenizer, target_tokenizer)
    b, _ = tw.create("zett", hypernet=tmp_path / "hn").embeddings(model, source_tokenizer, target_tokenizer)
    torch.testing.assert_close(a, b, rtol=0.02, atol=2e-3)  # fp16 weights


def test_zett_rejects_a_hypernetwork_for_another_model(trained_tiny_net, source_tokenizer, target_tokenizer, make_llama):
    _, net, _ = trained_tiny_net
    other = make_llama(source_tokenizer, dim=64)
    with pytest.raises(ValueError, match=r"source_in must have shape \(400, 32\)"):
        tw.create("zett", hypernet=net).embeddings(other, source_tokenizer, target_tokenizer)
    with pytest.raises(TypeError, match="hypernet must be"):
        tw.create("zett", hypernet=42)
    with pytest.raises(ValueError, match="at most max_parts=2"):
        small = ZettHypernetwork.for_model(other, **{**TINY_NET, "max_parts": 2})
        small(torch.tensor([[5, 6, 7]]), lm_embeddings(other)[0])


def test_hypernet_training_options_are_validated():
    with pytest.raises(ValueError, match="vocab_max must be >= 2000"):
        HypernetTrainConfig(vocab_min=2000, vocab_max=1000)
    with pytest.raises(ValueError, match="not HypernetConfig sizes"):
        HypernetTrainConfig(hypernet={"width": 3})
    with pytest.raises(ValueError, match="corpora must be a non-empty dict"):
        train_hypernet(None, None, {}, HypernetTrainConfig())


@pytest.mark.skipif(
    assets_dir() is None or not (assets_dir() / "text" / "zett-hypernet" / "hypernet.json").is_file()
    or not (assets_dir() / "reference-lm" / "tokenworks.json").is_file(),
    reason="the committed reference LM and its hypernetwork are not in assets/",
)
def test_committed_hypernetwork_reproduces_the_reference_embeddings():
    """How close the committed hypernetwork gets to the reference LM's own embeddings.

    Measured when committed: mean cosine 0.906, mean relative error 0.43 over every ordinary
    token (after the identity warm-up alone it was closer: the 3000 main steps trade some of it
    for the transfer objective, despite the auxiliary loss). An untrained network scores ~0."""
    from tokenworks.models import reference_lm
    from tokenworks.text import reference_hypernet

    model, tok = reference_lm(train_if_missing=False)
    net = reference_hypernet(train_if_missing=False)
    cos, rel = _identity_quality(net, model, torch.arange(2, len(tok)))
    assert cos > 0.85 and rel < 0.5, (cos, rel)


def test_reference_hypernet_recipe_trains_caches_and_reloads(tmp_cache, monkeypatch, source_tokenizer, make_llama):
    """The committed hypernetwork's reproduction path (`tokenworks train zett-hypernet` calls
    `train_reference_hypernet`), on a tiny config and a tiny stand-in for the reference LM."""
    import tokenworks.models as models
    from tokenworks.models import find_model
    from tokenworks.text import reference_hypernet
    from tokenworks.text.zett import reference_fingerprint

    model = make_llama(source_tokenizer, dim=32)
    monkeypatch.setattr(models, "reference_lm", lambda device="cpu", **k: (model, source_tokenizer))
    tiny = HypernetTrainConfig(
        steps=2, identity_steps=2, batch_size=2, seq_len=16, vocab_sample=64, n_tokenizers=2, vocab_min=300,
        vocab_max=320, share_min=0.005, share_max=0.01, stream_tokens=500, warmup=1, hypernet=TINY_NET,
    )  # fmt: skip
    net = reference_hypernet(config=tiny)
    path = find_model("text/zett-hypernet", reference_fingerprint(tiny))
    assert path is not None and (path / "hypernet.safetensors").is_file()
    info = json.loads((path / "tokenworks.json").read_text())
    assert info["params"] == sum(p.numel() for p in net.parameters()) and "final_loss" in info
    from safetensors import safe_open

    with safe_open(str(path / "hypernet.safetensors"), "pt") as f:  # committed as fp16
        assert f.get_tensor("in_proj.weight").dtype == torch.float16
    monkeypatch.setattr(models, "reference_lm", lambda *a, **k: pytest.fail("must load, not retrain"))
    again = reference_hypernet(config=tiny)
    for a, b in zip(net.parameters(), again.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(FileNotFoundError, match="tokenworks train zett-hypernet"):
        reference_hypernet(config=HypernetTrainConfig(steps=300), train_if_missing=False)


def test_prose_only_hypernetwork_never_reads_legal_text(tmp_cache, monkeypatch, source_tokenizer, make_llama):
    """The control hypernetwork (`tokenworks train zett-hypernet --corpus prose`): trained
    without legal text, cached under its own name, with its loss curve recorded."""
    import tokenworks.data as data
    import tokenworks.models as models
    from tokenworks.models import find_model
    from tokenworks.text import reference_hypernet
    from tokenworks.text.zett import reference_fingerprint, reference_name

    model = make_llama(source_tokenizer, dim=32)
    monkeypatch.setattr(models, "reference_lm", lambda device="cpu", **k: (model, source_tokenizer))
    monkeypatch.setattr(data, "load_legal", lambda *a, **k: pytest.fail("the prose-only hypernetwork must not read legal text"))
    tiny = HypernetTrainConfig(
        steps=2, identity_steps=2, batch_size=2, seq_len=16, vocab_sample=64, n_tokenizers=2, vocab_min=300,
        vocab_max=320, share_min=0.002, share_max=0.004, stream_tokens=500, warmup=1, hypernet=TINY_NET,
    )  # fmt: skip
    reference_hypernet(config=tiny, corpora=["prose"])
    assert reference_name(["prose"]) == "text/zett-hypernet-prose" and reference_name(["legal", "prose"]) == "text/zett-hypernet"
    path = find_model("text/zett-hypernet-prose", reference_fingerprint(tiny, ("prose",)))
    info = json.loads((path / "tokenworks.json").read_text())
    assert info["fingerprint"]["corpora"] == ["prose/train"] and info["curve"][-1][0] == 2
    assert find_model("text/zett-hypernet", reference_fingerprint(tiny)) is None  # the default is another model
    with pytest.raises(FileNotFoundError, match="--corpus prose"):
        reference_hypernet(config=HypernetTrainConfig(steps=300), corpora=["prose"], train_if_missing=False)
    with pytest.raises(ValueError, match="corpora must be distinct names"):
        reference_hypernet(config=tiny, corpora=["code"])


@pytest.mark.skipif(
    assets_dir() is None or not (assets_dir() / "text" / "zett-hypernet-prose" / "hypernet.json").is_file(),
    reason="the committed prose-only hypernetwork is not in assets/",
)
def test_committed_prose_only_hypernetwork_matches_its_reproduce_command():
    """`tokenworks train zett-hypernet --corpus prose --out assets/text/zett-hypernet-prose --fp16`
    runs the default recipe on prose only: the committed files carry exactly that fingerprint,
    the same recipe and steps as the prose + legal one, and a loss curve."""
    from tokenworks.text import reference_hypernet
    from tokenworks.text.zett import reference_fingerprint

    info = json.loads((assets_dir() / "text" / "zett-hypernet-prose" / "tokenworks.json").read_text())
    both = json.loads((assets_dir() / "text" / "zett-hypernet" / "tokenworks.json").read_text())
    assert info["fingerprint"] == reference_fingerprint(HypernetTrainConfig(), ("prose",))
    assert info["fingerprint"]["train"] == both["fingerprint"]["train"] and info["fingerprint"]["lm"] == both["fingerprint"]["lm"]
    assert len(info["curve"]) == 30 and info["curve"][-1][1] < info["curve"][0][1]
    net = reference_hypernet(train_if_missing=False, corpora=("prose",))
    other = reference_hypernet(train_if_missing=False)
    assert not torch.equal(net.in_proj.weight, other.in_proj.weight)


def test_train_zett_hypernet_cli_refuses_an_unknown_corpus(tmp_path):
    from typer.testing import CliRunner

    from tokenworks.cli import app

    r = CliRunner().invoke(app, ["train", "zett-hypernet", "--corpus", "code", "--out", str(tmp_path / "hn")])
    assert r.exit_code == 2 and "corpora must be distinct names" in " ".join(r.output.split())
    assert not (tmp_path / "hn").exists()
