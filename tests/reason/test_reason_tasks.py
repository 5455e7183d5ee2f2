"""Task generators against independent solvers (BFS over the parsed facts; Python's eval of the
parenthesized expression), disjoint splits, determinism and the tokenizer's round trip."""

import collections

import pytest

from tokenworks.reason.tasks import PROPERTIES, examples, reason_tokenizer


def _parse_graph(question: str):
    facts_text, query = question.rsplit(" . ", 1)
    edges = collections.defaultdict(set)
    for fact in (facts_text + " .").split(" . "):
        fact = fact.strip(" .")
        if fact:
            a, is_, b = fact.split()
            assert is_ == "is"
            edges[a].add(b)
    words = query.split()  # is PERSON X or Y ?
    assert words[0] == "is" and words[3] == "or" and words[-1] == "?"
    return edges, words[1], (words[2], words[4])


def _reachable(edges, start):
    seen, stack = {start}, [start]
    while stack:
        for v in edges[stack.pop()]:
            if v not in seen:
                seen.add(v)
                stack.append(v)
    return seen


def _bfs_dist(edges, start, goal):
    frontier, dist = [start], 0
    seen = {start}
    while frontier:
        if goal in frontier:
            return dist
        dist += 1
        frontier = [v for u in frontier for v in sorted(edges[u]) if v not in seen and not seen.add(v)]
    return None


@pytest.mark.parametrize("split,nodes", [("train", None), ("test", None), ("train", 6)])
def test_graph_answers_match_an_independent_search(split, nodes):
    exs = examples("graph", split, 60, nodes=nodes)
    for ex in exs:
        concepts = {w for w in ex.question.split() if w.endswith("pus")}
        assert len(concepts) == (nodes or 10)  # the curriculum's graphs are smaller, fewer distractors
        edges, person, options = _parse_graph(ex.question)
        reach = _reachable(edges, person)
        assert [o in reach for o in options].count(True) == 1, ex.question
        assert ex.answer in options and ex.answer in reach
        assert _bfs_dist(edges, person, ex.answer) == ex.length  # the chain is a shortest path
        # the chain of thought is a path of stated facts from the person to the answer
        node = person
        for step in ex.steps:
            a, _, b = step.rstrip(" .").split()
            assert a == node and b in edges[a]
            node = b
        assert node == ex.answer
    assert {ex.length for ex in exs} == {2, 3, 4}


def _deduce(question: str):
    """Independent ProntoQA solver: parse the facts, close the person's set of concepts under
    the "is-a" rules (fixed point), then read the property rules of every concept reached."""
    facts_text, query = question.rsplit(" . ", 1)
    isa, props, person_of = collections.defaultdict(set), collections.defaultdict(dict), {}
    for fact in (facts_text + " .").split(" . "):
        w = fact.strip(" .").split()
        if not w:
            continue
        if len(w) == 4:  # A is not P
            assert w[1:3] == ["is", "not"]
            props[w[0]][w[3]] = False
        elif w[2] in PROPERTIES:
            props[w[0]][w[2]] = True
        else:
            isa[w[0]].add(w[2])
    q = query.split()  # is PERSON [not] P ?
    person, negated, prop = q[1], q[2] == "not", q[-2]
    known = set(isa[person])
    while True:
        new = {b for a in known for b in isa[a]} - known
        if not new:
            break
        known |= new
    verdicts = {props[c][prop] for c in known if prop in props[c]}
    assert len(verdicts) == 1, question  # exactly one (consistent) rule about P applies
    holds = verdicts.pop()
    return person, known, holds != negated


def test_pronto_answers_match_forward_chaining():
    exs = examples("pronto", "test", 90)
    for ex in exs:
        person, known, truth = _deduce(ex.question)
        assert ex.answer == ("true" if truth else "false"), ex.question
        for step in ex.steps[:-1]:  # each step concludes a concept the person belongs to
            a, _, b = step.rstrip(" .").split()
            assert a == person and b in known
        assert ex.steps[-1].split()[0] == person
    assert {ex.length for ex in exs} == {2, 3, 4}
    assert 0.3 < sum(ex.answer == "true" for ex in exs) / len(exs) < 0.7


def test_arith_answers_match_python_eval():
    exs = examples("arith", "test", 100)
    for ex in exs:
        toks = ex.question.rstrip(" ?").split()
        expr = toks[0]
        for op, b in zip(toks[1::2], toks[2::2]):
            expr = f"({expr} {op} {b})"
        assert eval(expr) == int(ex.answer)  # noqa: S307 - our own digits and operators
        # each step states the running value, the last one the answer
        vals = [int(s.split()[3]) for s in ex.steps]
        assert vals[-1] == int(ex.answer) and all(0 <= v <= 29 for v in vals)
    assert {ex.length for ex in exs} == set(range(2, 7))


@pytest.mark.parametrize("task", ["graph", "pronto", "arith"])
def test_splits_are_disjoint_and_deterministic(task):
    tr = examples(task, "train", 600)
    te = examples(task, "test", 100)
    va = examples(task, "valid", 100)
    qs = [set(e.question for e in s) for s in (tr, te, va)]
    assert not (qs[0] & qs[1]) and not (qs[0] & qs[2]) and not (qs[1] & qs[2])
    examples.cache_clear()
    assert examples(task, "test", 100) == te


def test_tokenizer_round_trips_every_example_word():
    tok = reason_tokenizer()
    for ex in examples("graph", "test", 5) + examples("pronto", "test", 5) + examples("arith", "test", 5):
        text = " ".join([ex.question, *ex.steps, ex.answer])
        ids = tok.convert_tokens_to_ids(text.split())
        assert tok.unk_token_id not in ids
        assert tok.convert_ids_to_tokens(ids) == text.split()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="task"):
        examples("nope", "test", 3)
    with pytest.raises(ValueError, match="split"):
        examples("graph", "dev", 3)
    with pytest.raises(ValueError, match="lengths"):
        examples("graph", "test", 3, lengths=(1, 3))
    with pytest.raises(ValueError, match="nodes"):
        examples("pronto", "test", 3, nodes=6)
    with pytest.raises(ValueError, match="nodes"):
        examples("graph", "test", 3, nodes=2)
