from collections import Counter

from lightning_adapt.icl.prompts import build_context, build_prompts, content_free_prompt


def test_context_uses_instruction_and_delimiters_exactly(sentiment_task):
    task = sentiment_task(instruction="Classify the sentiment.\n\n")
    demos = [{"text": "great food", "label": "Positive"}, {"text": "too long", "label": "Negative"}]
    context = build_context(task, demos, {"text": "lazy dog", "label": "Negative"})
    assert context == (
        "Classify the sentiment.\n\nReview: great food\nSentiment: Positive\n\n"
        "Review: too long\nSentiment: Negative\n\nReview: lazy dog\nSentiment:"
    )
    custom = sentiment_task(target_delimiter=" => ", fewshot_delimiter="\n###\n")
    expected = "Review: great food\nSentiment: => Positive\n###\nReview: too long\nSentiment:"
    assert build_context(custom, demos[:1], demos[1]) == expected


def test_a_query_is_never_its_own_demonstration(sentiment_task):
    data = sentiment_task(demos=None, shots=[6]).load()  # the pool is the 7 queries themselves
    for seed in (0, 1, 2):
        for prompt in build_prompts(data, 6, seed):
            assert len(prompt.demos) == 6 and len(set(prompt.demos)) == 6
            assert data.query_keys[prompt.query] not in {data.demo_keys[i] for i in prompt.demos}


def test_each_seed_fixes_one_demonstration_set_nested_across_k(sentiment_task):
    data = sentiment_task(shots=[1, 3]).load()
    sets = {seed: {p.demos for p in build_prompts(data, 3, seed)} for seed in (0, 1, 2)}
    assert all(len(s) == 1 for s in sets.values())  # the same demos for every query of a seed
    assert len({next(iter(s)) for s in sets.values()}) == 3  # different sets for different seeds
    assert build_prompts(data, 3, 0) == build_prompts(data, 3, 0)  # reproducible
    assert build_prompts(data, 1, 0)[0].demos == next(iter(sets[0]))[:1]


def test_balanced_sampling_gives_equal_label_counts(sentiment_task, review_files, helpers):
    demos_path, _ = review_files
    skewed = [r | {"label": "Positive"} for r in helpers.reviews(8, 5)] + helpers.reviews(2, 6)[1:] * 2
    helpers.write_jsonl(demos_path, skewed)  # 8 Positive, 2 Negative
    data = sentiment_task(shots=[4], balanced=True).load()
    unbalanced = sentiment_task(shots=[4]).load()
    for seed in range(5):
        for prompt in build_prompts(data, 4, seed):
            assert Counter(data.demo_labels[i] for i in prompt.demos) == {"Positive": 2, "Negative": 2}
    counts = [Counter(unbalanced.demo_labels[i] for i in build_prompts(unbalanced, 4, s)[0].demos) for s in range(5)]
    assert any(c["Positive"] > 2 for c in counts)  # plain sampling follows the skew
    odd = {frozenset(Counter(data.demo_labels[i] for i in build_prompts(data, 3, s)[0].demos).items()) for s in range(6)}
    assert odd <= {frozenset({("Positive", 2), ("Negative", 1)}), frozenset({("Positive", 1), ("Negative", 2)})}


def test_content_free_prompt_fills_every_template_field(sentiment_task):
    assert sentiment_task(template="Title: {title}\nReview: {text}").template_fields == ["title", "text"]
    data = sentiment_task(calibrate=True).load()
    prompt = content_free_prompt(data, (0,), "N/A")
    assert prompt.query == -1
    assert prompt.context.endswith("\n\nReview: N/A\nSentiment:") and prompt.context.startswith("Review: ")
