import pytest
import torch

from lightning_adapt.icl import ICLTaskError
from lightning_adapt.icl.encoding import encode_pair
from lightning_adapt.icl.plan import encode_task
from lightning_adapt.icl.prompts import build_context


def test_encode_pair_moves_trailing_whitespace_into_the_continuation(tiny_model):
    _, tokenizer = tiny_model
    context_ids, continuation_ids = encode_pair(tokenizer, "Sentiment: ", "Positive", add_bos=False)
    assert context_ids == tokenizer.encode("Sentiment:").tolist()
    assert context_ids + continuation_ids == tokenizer.encode("Sentiment: Positive").tolist()
    assert tokenizer.decode(torch.tensor(continuation_ids)) == " Positive"
    # tokenizing the two strings apart would score different tokens
    assert tokenizer.encode("Sentiment: ").tolist() + tokenizer.encode("Positive").tolist() != context_ids + continuation_ids


def test_too_long_prompt_names_the_query_and_the_excess(tiny_model, sentiment_task, review_files, helpers):
    model, tokenizer = tiny_model
    _, queries_path = review_files
    records = helpers.reviews(3, 2)
    records[1]["text"] = "the quick brown fox jumps over the lazy dog " * 12
    helpers.write_jsonl(queries_path, records)
    task = sentiment_task(shots=[2], seeds=[0])
    data = task.load()
    demos = [data.demos[i] for i in encode_task(data, tokenizer, 10_000).prompts[(2, 0, 0)][1].prompt.demos]
    context, continuation = encode_pair(tokenizer, build_context(task, demos, records[1]), " Negative", add_bos=False)
    excess = len(context) + len(continuation) - 1 - model.config.block_size
    assert excess > 0
    with pytest.raises(ICLTaskError, match=rf"'sent': query .*queries.jsonl: row 2 \(k=2, seed=0\) needs .*, {excess} more than .* 256; lower k"):
        encode_task(data, tokenizer, model.config.block_size)


def test_truncate_demos_drops_demonstrations_from_the_left(tiny_model, sentiment_task):
    _, tokenizer = tiny_model
    task = sentiment_task(shots=[4], seeds=[0], truncate_demos=True)
    data = task.load()
    full = encode_task(data, tokenizer, 10_000).prompts[(4, 0, 0)]
    limit = max(item.input_length() for item in full) - 5  # the longest prompts no longer fit
    truncated = encode_task(data, tokenizer, limit).prompts[(4, 0, 0)]
    assert all(item.input_length() <= limit for item in truncated)
    shortened = [(f, t) for f, t in zip(full, truncated) if t.prompt.demos != f.prompt.demos]
    assert shortened
    for f, t in shortened:
        assert t.prompt.demos == f.prompt.demos[len(f.prompt.demos) - len(t.prompt.demos):]
    with pytest.raises(ICLTaskError, match="truncate_demos"):
        encode_task(sentiment_task(shots=[4], seeds=[0]).load(), tokenizer, limit)
