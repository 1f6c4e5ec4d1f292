import pytest
import torch

from lightning_adapt.icl import Generation, ICLTask
from lightning_adapt.icl.encoding import encode_pair
from lightning_adapt.icl.prompts import build_context
from lightning_adapt.icl.runner import ICLRunner
from lightning_adapt.icl.scoring import (
    Request,
    generate,
    loglikelihoods,
    naive_generate,
    naive_loglikelihood,
    naive_score,
    scores,
)


def _run(task, model, tokenizer, batch_size=3):
    runner = ICLRunner([task])
    runner.prepare(tokenizer, model.config.block_size)
    return runner, runner.run(model, tokenizer, batch_size)


@pytest.mark.parametrize("k", [0, 1, 4])
def test_cached_batched_loglikelihoods_equal_one_forward_per_choice(k, tiny_model, sentiment_task):
    model, tokenizer = tiny_model
    # The context ends with a space, which lm-eval moves into the continuation: the token boundary
    # differs from tokenizing context and choice apart. demos=None: queries are drawn as each other's
    # demos (never their own), so the prompts fall into several prefix groups; batch_size=3 splits them.
    task = sentiment_task(template="Review: {text}\nSentiment: ", demos=None, shots=[k], seeds=[0, 1])
    runner, results = _run(task, model, tokenizer)
    data = runner.data[0]
    worst = 0.0
    for record in results.predictions:
        context = build_context(task, [data.demos[i] for i in record["demos"]], data.queries[record["query"]])
        assert context.endswith("Sentiment: ") and len(record["demos"]) == k
        for choice, ll in zip(record["choices"], record["loglikelihoods"]):
            context_ids, continuation_ids = encode_pair(tokenizer, context, " " + choice, add_bos=False)
            assert tokenizer.decode(torch.tensor(continuation_ids)) == "  " + choice  # the moved space
            worst = max(worst, abs(ll - naive_loglikelihood(model, context_ids + continuation_ids, len(context_ids))))
    assert len(results.predictions) == 2 * len(data.queries)
    assert worst < 1e-4


def test_prefix_is_computed_once_and_lm_head_only_at_continuation_positions(tiny_model, sentiment_task):
    model, tokenizer = tiny_model
    task = sentiment_task(shots=[4], seeds=[0])
    runner = ICLRunner([task])
    runner.prepare(tokenizer, model.config.block_size)
    embedded, projected = [], []
    hooks = [
        model.transformer.wte.register_forward_hook(lambda m, args, out: embedded.append(args[0].numel())),
        model.lm_head.register_forward_hook(lambda m, args, out: projected.append(args[0].shape[0])),
    ]
    try:
        runner.run(model, tokenizer, batch_size=16)
    finally:
        for hook in hooks:
            hook.remove()
    items = runner.plans[0].prompts[(4, 0, 0)]
    naive_tokens = sum(len(item.context) + len(c) - 1 for item in items for c in item.continuations)
    continuation_tokens = sum(len(c) for item in items for c in item.continuations)
    assert sum(projected) == continuation_tokens  # never the whole vocabulary at every position
    # one shared 4-shot prefix: far fewer tokens embedded than one forward per (query, choice)
    assert sum(embedded) < naive_tokens / 3


def test_is_greedy_is_true_exactly_when_every_continuation_token_is_the_argmax(tiny_model):
    model, tokenizer = tiny_model
    context = tuple(tokenizer.encode("Review: the food was great\nSentiment:").tolist())
    greedy = list(context)
    with torch.no_grad():
        for _ in range(3):  # the model's own greedy continuation, and that continuation with its last token changed
            greedy.append(int(model(torch.tensor([greedy]))[0, -1].argmax()))
    changed = (*greedy[:-1], (greedy[-1] + 1) % model.config.vocab_size)
    requests = [Request(tuple(greedy), len(context), group="g"), Request(changed, len(context), group="g"),
                Request(tuple(greedy[:-1]), len(context), group="g")]
    got = scores(model, requests, batch_size=2)
    assert [g for _, g in got] == [True, False, True]
    assert [g for _, g in got] == [naive_score(model, r.tokens, r.start)[1] for r in requests]
    assert [v for v, _ in got] == pytest.approx(loglikelihoods(model, requests, batch_size=2), abs=1e-6)


def _with_embedded_shapes(model, run):
    """What ``run()`` returns, and the (rows, width) of every forward pass it made."""
    shapes = []
    hook = model.transformer.wte.register_forward_hook(lambda m, args, out: shapes.append(tuple(args[0].shape)))
    try:
        return run(), shapes
    finally:
        hook.remove()


def test_requests_whose_inputs_extend_each_other_share_one_row(tiny_model):
    model, tokenizer = tiny_model
    context = tuple(tokenizer.encode("Review: the food was great\nSentiment:").tolist())
    continuations = [(5,), (9,), (5, 7, 11), (5, 7), (12, 3)]  # fed: c, c, c+5+7, c+5, c+12
    requests = [Request(context + c, len(context), group="g") for c in continuations]
    requests.append(Request(context[:-3] + (40, 41), len(context) - 3, group="other"))
    scores, batches = _with_embedded_shapes(model, lambda: loglikelihoods(model, requests, batch_size=16))
    reference = [naive_loglikelihood(model, r.tokens, r.start) for r in requests]
    assert scores == pytest.approx(reference, abs=1e-4)
    # Both groups are small, so they share one forward pass of three rows: c+5+7 serves four requests, c+12 one,
    # "other" one (their common prefix is too short to get a forward pass of its own).
    assert batches == [(3, len(context) + 2)]


def _greedy(model, tokens, n):
    """The model's own greedy continuation of ``tokens``, ``n`` tokens long."""
    tokens = list(tokens)
    with torch.no_grad():
        for _ in range(n):
            tokens.append(int(model(torch.tensor([tokens]))[0, -1].argmax()))
    return tuple(tokens[-n:])


def test_many_small_groups_with_different_prefixes_are_batched_together_and_equal_naive(tiny_model):
    model, tokenizer = tiny_model
    encode = lambda text: tuple(tokenizer.encode(text).tolist())  # noqa: E731
    texts = ["the food was great", "service was slow", "a fine view", "far too loud", "cold soup", "lovely staff"]
    shared = encode("".join(f"Review: {text}\nSentiment: Positive\n" for text in texts))
    requests = []
    for n in range(30):
        # as lm-eval draws them: other demonstrations for most contexts, the same ones (a long prefix) for every third
        demos = [texts[(n + i) % 6] + f" {n}" for i in range(1 + n % 4)]
        context = shared if n % 3 == 0 else encode("".join(f"Review: {text}\nSentiment: Mixed\n" for text in demos))
        context += encode(f"Review: query {n}\nSentiment:")
        greedy = _greedy(model, context, 2)
        choices = [greedy[:1], (5,), (7, 11), greedy, (greedy[0], 3)][: 1 + n % 5]  # 1 or 2 rows per context
        requests += [Request(context + c, len(context), group=context) for c in choices]
    got, shapes = _with_embedded_shapes(model, lambda: scores(model, requests, batch_size=16))
    reference = [naive_score(model, r.tokens, r.start) for r in requests]
    assert [v for v, _ in got] == pytest.approx([v for v, _ in reference], abs=1e-5)
    assert [g for _, g in got] == [g for _, g in reference] and any(g for _, g in got) and not all(g for _, g in got)
    assert len(shapes) < 30 / 2 and max(rows for rows, _ in shapes) > 1  # groups packed, not one batch each
    assert sum(rows * width for rows, width in shapes) < sum(len(r.tokens) - 1 for r in requests) / 2


def test_generation_of_small_groups_batched_together_equals_naive(tiny_model):
    model, tokenizer = tiny_model
    decode = lambda ids: tokenizer.decode(torch.tensor(ids))  # noqa: E731
    words = ["the fox", "a dog", "far too long", "brown", "quick", "lazy"]
    requests = []
    for g in range(5):  # each group: its own demonstrations, then 1-3 queries
        demos = "".join(f"Q: {word} {g}\nA: {word}\n" for word in words[g:] + words[:g])
        for query in ["the food was", "Paris is the", "lazy"][: 1 + g % 3]:
            tokens = tuple(tokenizer.encode(f"{demos}Q: {query}\nA:").tolist())
            requests.append(Request(tokens, len(tokens), group=g))
    got = generate(model, requests, 4, [], tokenizer.eos_id, decode, batch_size=16)
    assert got == [naive_generate(model, r.tokens, 4, [], tokenizer.eos_id, decode) for r in requests]


def test_greedy_generation_matches_naive_and_cuts_at_stop_strings(tiny_model, tmp_path, helpers):
    model, tokenizer = tiny_model
    decode = lambda ids: tokenizer.decode(torch.tensor(ids))  # noqa: E731
    records = [{"q": q, "a": "unused"} for q in ["the fox", "a dog", "the food was", "Paris is the"]]

    def task(stop, targets=None):
        rows = [r | {"a": t} for r, t in zip(records, targets)] if targets else records
        path = helpers.write_jsonl(tmp_path / f"qa{len(stop)}.jsonl", rows)
        spec = Generation(max_new_tokens=8, stop=stop, metrics=["exact_match"])
        return ICLTask(name="qa", queries=str(path), template="Q: {q}\nA:", target="a", generate=spec, shots=[0, 2])

    _, free = _run(task([]), model, tokenizer)
    for record in free.predictions:
        context = build_context(task([]), [records[i] for i in record["demos"]], records[record["query"]])
        reference = naive_generate(model, tokenizer.encode(context).tolist(), 8, [], tokenizer.eos_id, decode)
        assert (record["prediction"], record["generated_tokens"]) == (reference.text, reference.tokens)
    first = free.predictions[0]["prediction"]  # cut at a character first seen after some non-blank text
    stop = next(c for i, c in enumerate(first) if not c.isspace() and first[:i].strip() and c not in first[:i])
    expected = first[: first.index(stop)]

    _, cut = _run(task([stop], targets=[expected, "zz", "zz", "zz"]), model, tokenizer)
    assert cut.predictions[0]["prediction"] == expected
    assert all(stop not in record["prediction"] for record in cut.predictions)
    assert cut.predictions[0]["exact_match"] == 1.0
    assert cut.rows[0]["exact_match"] == pytest.approx(sum(r["exact_match"] for r in cut.predictions[:4]) / 4)


def test_progress_hook_counts_every_request_once(tiny_model, sentiment_task, capsys):
    model, tokenizer = tiny_model
    runner = ICLRunner([sentiment_task(shots=[0, 2], seeds=[0, 1])])
    runner.prepare(tokenizer, model.config.block_size)
    done = []
    requests = [Request(tuple(tokenizer.encode(f"review {i} was fine").tolist()), 2) for i in range(7)]
    loglikelihoods(model, requests, batch_size=3, on_batch=done.append)
    assert sum(done) == 7 and len(done) >= 3
    runner.run(model, tokenizer, batch_size=3, progress=True)
    assert "ICL sent:   0%|          | 0/42 " in capsys.readouterr().err  # 7 queries x (k=0 + k=2 x 2 seeds) x 2
def _trie_size(sequences):
    """Distinct non-empty prefixes: the fewest token positions an exact scorer runs."""
    return len({tuple(s[:n]) for s in set(map(tuple, sequences)) for n in range(1, len(s) + 1)})


def test_a_prefix_every_batch_shares_runs_once_though_no_batch_alone_would_share_it(tiny_model):
    model, tokenizer = tiny_model
    encode = lambda text: tuple(tokenizer.encode(text).tolist())  # noqa: E731
    start = encode("Review:")[:3]  # 3 tokens: the 16 rows of one batch alone save too little to run them apart
    contexts = [start + (100 + n, 200 + n % 7) + encode("\nSentiment:") for n in range(48)]  # differ after `start`
    requests = [Request(c + (5,), len(c), group=c) for c in contexts]
    got, shapes = _with_embedded_shapes(model, lambda: scores(model, requests, batch_size=16))
    reference = [naive_score(model, r.tokens, r.start) for r in requests]
    assert [v for v, _ in got] == pytest.approx([v for v, _ in reference], abs=1e-5)
    assert shapes[0] == (1, len(start))  # run once for all 48 rows, left in the cache for every batch


def test_the_choices_of_one_prompt_share_it_within_a_group_of_many_prompts(tiny_model):
    model, tokenizer = tiny_model
    encode = lambda text: tuple(tokenizer.encode(text).tolist())  # noqa: E731
    demos = encode("Review: the food was great\nSentiment: Positive\n")
    requests = []
    for n in range(24):  # as an ICLTask makes them: one group per demonstration set, multi-token choices
        context = demos + (100 + n,) + encode(f" query {n}" * (1 + n % 3) + "\nSentiment:")  # differ after demos
        requests += [Request(context + c, len(context), group="demos") for c in [(5, 7), (9, 3, 4)]]
    got, shapes = _with_embedded_shapes(model, lambda: scores(model, requests, batch_size=16))
    reference = [naive_score(model, r.tokens, r.start) for r in requests]
    assert [v for v, _ in got] == pytest.approx([v for v, _ in reference], abs=1e-5)
    least = _trie_size([r.tokens[:-1] for r in requests])
    assert sum(rows * width for rows, width in shapes) <= least * 1.25  # each prompt once, not once per choice
