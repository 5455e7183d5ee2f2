"""Hostile Unicode for every registered text tokenizer (Hypothesis).

Each recipe of the registry (``kind="text_tokenizer"``) is trained once on a small mixed
corpus; then arbitrary Unicode (every category but lone surrogates) and the classic hostile
cases (combining marks, right-to-left text, ZWJ emoji sequences, NUL and other controls,
one very long word, special-token look-alikes) must come back exactly from
``decode(encode(text))``: byte-level BPE has every byte in its alphabet, so nothing may be
lost or replaced. The reference is the text itself (normalized only for a recipe whose
engine declares a normalizer, e.g. an uncased one). Strings the engine refuses (lone
surrogates, which have no UTF-8 form) are rejected by the library's own input check with a
ValueError that names the document and the position, not a TypeError from inside
``tokenizers``.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import tokenworks as tw

RECIPES = [m.name for m in tw.methods(kind="text_tokenizer")]

CORPUS = [
    "The quick brown fox jumps over the lazy dog. " * 5,
    "Zürich, naïve café, Ελληνικά, русский текст, 日本語のテキスト, 한국어, עברית, العربية.",
    "def f(x):\n\treturn x ** 2  # code, tabs\n" * 3,
    "emoji 👩‍👩‍👧 🏳️‍🌈 ✊🏽 and combining e\u0301 a\u0308 n\u0303",
]

HOSTILE = [
    "e\u0301\u0301\u0301 a\u0308\u0330 Z\u0335\u0336\u0337",  # stacked combining marks
    "\u202eRTL override\u202c مرحبا بالعالم שלום עולם",  # right-to-left text and bidi controls
    "👩\u200d👩\u200d👧\u200d👦 🧑🏽\u200d🚀 🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",  # ZWJ, tags
    "\x00NUL\x00 \x01\x1f\x7f \u200b\ufeff\ufffe\uffff",  # controls, zero-width, non-characters
    "a" * 20_000,  # one very long word
    "Donaudampfschifffahrtsgesellschaftskapitän" * 200,
    "<|endoftext|> <|endoftext <|pad|>|>",  # special-token look-alikes
    "\U0010ffff\U000f0000 \U0001d54f\U0001d4b3",  # planes 15/16 and math letters
    "",
]


@pytest.fixture(scope="module", params=RECIPES)
def trained(request):
    recipe = tw.create(request.param, vocab_size=max(512, tw.create(request.param, vocab_size=4096).min_vocab_size))
    return recipe, recipe.train(CORPUS)


def _expected(recipe, text: str) -> str:
    # the identity unless the engine declares a normalizer (then its documented output)
    return text if recipe.engine().tokenizer.normalizer is None else recipe.normalize(text)


unicode_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=unicode_text)
@example(text=HOSTILE[0])
def test_arbitrary_unicode_round_trips_exactly(trained, text):
    recipe, tok = trained
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == _expected(recipe, text)


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_strings_round_trip_exactly(trained, text):
    recipe, tok = trained
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == _expected(recipe, text)
    if recipe.engine().tokenizer.normalizer is None:
        # byte-level: the ids spell the UTF-8 bytes, so a non-empty text gets at least one id
        # and at most one per byte (plus the special tokens it happens to contain)
        assert (len(ids) > 0) == (len(text) > 0)
        assert len(ids) <= len(text.encode("utf-8"))


@settings(max_examples=20, deadline=None)
@given(prefix=unicode_text, surrogate=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), suffix=unicode_text)
def test_lone_surrogates_are_rejected_clearly(prefix, surrogate, suffix):
    recipe = tw.create(RECIPES[0], vocab_size=max(512, tw.create(RECIPES[0], vocab_size=4096).min_vocab_size))
    text = prefix + surrogate + suffix
    with pytest.raises(ValueError, match=rf"texts\[1\] holds a lone surrogate U\+{ord(surrogate):04X} at character {len(prefix)}"):
        recipe.train(["fine text", text])


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_rejects_surrogates_before_the_engine(name):
    from tokenworks.text import evaluate_tokenizer

    recipe = tw.create(name, vocab_size=max(512, tw.create(name, vocab_size=4096).min_vocab_size))
    with pytest.raises(ValueError, match="lone surrogate U\\+D800"):
        recipe.train(["ok", "bad \ud800 text"])
    tok = tw.create("byte_bpe", vocab_size=300).train(CORPUS)
    with pytest.raises(ValueError, match="lone surrogate U\\+DFFF"):
        evaluate_tokenizer(tok, ["ok", "x\udfff"])
