"""Tokenizer recipes (P55 KL3M domain and character BPE, general BPE baseline) on HF tokenizers."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tokenworks as tw
from tokenworks.text import kl3m_custom_tokens, legal_fixed_tokens, load_tokenizer, read_text_folder, token_bytes
from tokenworks.text.vocab import backend, byte_level_table

RECIPES = [m.name for m in tw.methods(kind="text_tokenizer")]
VARIANTS = [*RECIPES, "kl3m_domain_bpe-uncased"]
HYP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def test_every_recipe_is_registered_with_the_right_kind():
    assert {"byte_bpe", "kl3m_domain_bpe", "kl3m_char_bpe"} <= set(RECIPES)
    assert tw.get("kl3m_domain_bpe").paper == tw.get("kl3m_char_bpe").paper == "P55"
    assert tw.get("byte_bpe").is_baseline


@pytest.mark.parametrize("name", VARIANTS)
@HYP
@given(text=st.text(max_size=80))
def test_round_trip_of_arbitrary_unicode(trained, name, text):
    recipe, tok = trained[name]
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == recipe.normalize(text)
    # bytes level: the tokens' bytes spell the UTF-8 of the text exactly
    tb = token_bytes(tok)
    assert b"".join(tb[i] for i in ids) == recipe.normalize(text).encode("utf-8")


@pytest.mark.parametrize("name", VARIANTS)
@HYP
@given(data=st.binary(max_size=64))
def test_round_trip_of_arbitrary_bytes(trained, name, data):
    recipe, tok = trained[name]
    for text in (data.decode("latin-1"), data.decode("utf-8", errors="replace")):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == recipe.normalize(text)


@pytest.mark.parametrize("name", VARIANTS)
def test_exported_tokenizer_json_loads_in_transformers_and_tokenizers(trained, name, tmp_path):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    recipe, tok = trained[name]
    tok.save_pretrained(tmp_path)
    text = 'Section 2(a) of the GPL-2.0: "AS IS"  \n\n Größe 東京 🤖'
    want = tok(text, add_special_tokens=False)["input_ids"]
    again = PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    assert again(text, add_special_tokens=False)["input_ids"] == want
    assert Tokenizer.from_file(str(tmp_path / "tokenizer.json")).encode(text, add_special_tokens=False).ids == want
    assert load_tokenizer(tmp_path).decode(want) == recipe.normalize(text)
    assert tok.eos_token == ("<|end|>" if name.startswith("kl3m_domain") else "<|endoftext|>") and tok.pad_token == "<|pad|>"


@pytest.mark.parametrize("name", VARIANTS)
def test_same_corpus_same_tokenizer(trained, small_corpus, name):
    recipe, tok = trained[name]
    again = type(recipe)(**recipe.options()).train(small_corpus)
    assert again.get_vocab() == tok.get_vocab()


def test_char_bpe_never_builds_a_token_longer_than_three_characters(trained, small_corpus):
    recipe, tok = trained["kl3m_char_bpe"]
    tb = token_bytes(tok)
    special = set(tok.all_special_ids)
    assert max(len(b) for i, b in enumerate(tb) if i not in special) == 3  # the limit is reached, never passed
    for enc in backend(tok).encode_batch(small_corpus[:10], add_special_tokens=False):
        assert all(len(tb[i]) <= 3 for i in enc.ids)
    # the general recipe on the same text does build longer tokens (the limit is the recipe's)
    _, general = trained["byte_bpe"]
    assert max(len(b) for b in token_bytes(general)) > 3


def test_domain_bpe_fixed_tokens_power_of_two_and_uncased_variant(trained, small_corpus):
    recipe, tok = trained["kl3m_domain_bpe"]
    assert len(tok) == 2048 and (len(tok) & (len(tok) - 1)) == 0
    vocab = tok.get_vocab()
    assert all(t in vocab for t in legal_fixed_tokens())
    ids = tok("see (a) and GPL-2.0, not LGPL-2.0", add_special_tokens=False)["input_ids"]
    pieces = tok.convert_ids_to_tokens(ids)
    assert "(a)" in pieces and pieces.count("GPL-2.0") == 1  # single_word: no match inside LGPL-2.0
    # a vocabulary that is not a power of two is padded up to the next one (whitespace runs)
    padded = tw.create("kl3m_domain_bpe", vocab_size=2100).train(small_corpus)
    assert len(padded) == 4096 and " " * 500 in padded.get_vocab()
    # uncased: lower-casing normalizer, fixed tokens lower-cased
    unc = tw.create("kl3m_domain_bpe", vocab_size=2048, cased=False)
    utok = unc.train(small_corpus)
    assert utok.decode(utok("GNU General PUBLIC License", add_special_tokens=False)["input_ids"]) == "gnu general public license"
    assert "(A)" not in utok.get_vocab() and "gpl-2.0" in utok.get_vocab() and "<DIV" not in utok.get_vocab()


# written from KL3M's get_custom_tokens / train_tokenizer (kl3m_004), item by item
KL3M_EXPECTED = [
    "  ", " " * 8, "\t\t", "\r" * 8, "\n" * 5, "\r\n", "\t ",  # whitespace
    "##", "######", "**", "~~", "```", "![", "ftp://", "tel:", "://", "..", "-" * 8, "==", "__", "~" * 8,  # markdown
    "<html", "<HTML", "<column", "</textarea>", "</h4>", " href=", " ID=", " class=",  # html
    '{"', '"}', '["', '"]', '":', '","', '":"', "null", "true", "false",  # json
    "<!--", "-->", "<![CDATA[", "]]>", "<?xml", "<xml", "</xml>",  # xml
    "1776", "1999", "2049",  # years
    "(a)", "(Z)", "(1)", "(99)", "(ii)", "(IX)", "10", "999",  # citations and section numbers
]
KL3M_NOT = ["1775", "2050", "(100)", "1000", "9", "#", "(i)x", " " * 9, "</HTML>"]
KL3M_SPECIAL = ["<|start|>", "<|end|>", "<|pad|>", "<|unk|>", "<|sep|>", "<|cls|>", "<|mask|>",
                "<|system|>", "</|system|>", "<|user|>", "</|user|>", "<|instruction|>", "</|instruction|>"]  # fmt: skip


def test_kl3m_custom_tokens_and_special_tokens_follow_the_official_recipe(trained):
    full = set(kl3m_custom_tokens())
    assert set(KL3M_EXPECTED) <= full and not (set(KL3M_NOT) & full)
    assert all(len(t) > 1 for t in full)
    # group sizes as in the official code: 274 years, 990 section numbers, 37 tags
    assert len(kl3m_custom_tokens(["years"])) == 274
    assert len(kl3m_custom_tokens(["html"])) == 37 * 3 + 12
    assert len([t for t in kl3m_custom_tokens(["citations"]) if t.isdigit()]) == 990
    recipe, tok = trained["kl3m_domain_bpe"]
    assert list(recipe.special_tokens) == KL3M_SPECIAL
    added = {a.content: a for a in backend(tok).get_added_tokens_decoder().values()}
    assert all(added[t].special for t in KL3M_SPECIAL)
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.mask_token) == ("<|start|>", "<|end|>", "<|pad|>", "<|mask|>")
    vocab = tok.get_vocab()
    assert all(t in vocab for t in kl3m_custom_tokens())
    text = '<div class="x">{"a": null}</div> ## Sec. 10 (b) in 1999 ~~~~'
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text
    # groups select subsets; unknown groups are refused by name
    small = tw.create("kl3m_domain_bpe", vocab_size=512, custom_tokens=["json", "xml"])
    assert small.n_fixed == 17
    with pytest.raises(ValueError, match="custom_tokens: unknown group"):
        tw.create("kl3m_domain_bpe", custom_tokens=["emoji"])


def test_byte_level_table_matches_the_engine():
    from tokenizers import pre_tokenizers

    table = byte_level_table()
    assert set(table.values()) == set(pre_tokenizers.ByteLevel.alphabet())
    pt = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    for text in ["a b\n\t~", "é東🤖", "\x00\x7f"]:
        (piece, _), = pt.pre_tokenize_str(text)
        assert piece == "".join(table[b] for b in text.encode("utf-8"))


@pytest.mark.parametrize("name", RECIPES)
def test_bad_inputs_give_clear_errors(name):
    info = tw.get(name)
    V = 2048 if name == "kl3m_domain_bpe" else 512
    with pytest.raises(ValueError, match="texts is empty"):
        info.create(vocab_size=V).train([])
    with pytest.raises(ValueError, match="all empty or whitespace"):
        info.create(vocab_size=V).train(["", "  \n"])
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str"):
        info.create(vocab_size=V).train(["abc", b"bytes"])
    with pytest.raises(TypeError, match="single str"):
        info.create(vocab_size=V).train("just one string")
    with pytest.raises(ValueError, match="vocab_size must be >= .*alphabet"):
        info.create(vocab_size=200)
    with pytest.raises(ValueError, match="min_frequency must be >= 1"):
        info.create(vocab_size=V, min_frequency=0)


def test_recipe_options_are_validated_by_name():
    with pytest.raises(ValueError, match="max_chars must be >= 1"):
        tw.create("kl3m_char_bpe", max_chars=0)
    with pytest.raises(TypeError, match="cased must be a bool"):
        tw.create("kl3m_domain_bpe", cased="no")
    with pytest.raises(TypeError, match="special_tokens"):
        tw.create("byte_bpe", special_tokens="<eos>")


def test_read_text_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_text_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="no file matching"):
        read_text_folder(tmp_path)
    (tmp_path / "a.txt").write_text("   \n", encoding="utf-8")
    with pytest.raises(ValueError, match="are empty"):
        read_text_folder(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("Größe", encoding="utf-8")
    assert read_text_folder(tmp_path) == ["   \n", "Größe"]
    (tmp_path / "c.txt").write_bytes(b"caf\xe9 latin-1")
    with pytest.raises(ValueError, match=r"c\.txt.*not valid UTF-8.*0xe9 at offset 3"):
        read_text_folder(tmp_path)
