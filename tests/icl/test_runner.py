import copy
import threading

import pytest
import torch

from lightning_adapt.icl.runner import ICLRunner


def test_run_restores_modes_gradients_rng_and_caches(tiny_checkpoint, tiny_model, sentiment_task, helpers):
    _, tokenizer = tiny_model
    model = helpers.load_gpt(tiny_checkpoint).train()
    reference = ICLRunner([sentiment_task(shots=[0, 2], calibrate=True)])
    reference.prepare(tokenizer, model.config.block_size)
    expected = reference.run(copy.deepcopy(model), tokenizer, batch_size=4)

    model.transformer.h[1].eval()  # a mixed train/eval state must come back exactly
    model.transformer.wte.weight.requires_grad_(False)
    model.max_seq_length = 16  # shorter than the prompts: the evaluation needs a longer RoPE cache
    cos, sin = model.cos, model.sin
    modes = [m.training for m in model.modules()]
    grads = [p.requires_grad for p in model.parameters()]
    torch.manual_seed(123)
    rng = torch.get_rng_state()

    results = reference.run(model, tokenizer, batch_size=4)

    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == grads
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.max_seq_length == 16 and model.cos is cos and model.sin is sin
    assert model.mask_cache is None and all(block.attn.kv_cache is None for block in model.transformer.h)
    assert results.rows == expected.rows  # the shortened max_seq_length changed nothing


def test_sharded_ranks_gather_to_the_single_process_results(tiny_model, sentiment_task):
    model, tokenizer = tiny_model
    tasks = [sentiment_task(shots=[0, 1], seeds=[0, 1], calibrate=True)]
    single = ICLRunner(tasks)
    single.prepare(tokenizer, model.config.block_size)
    expected = single.run(model, tokenizer, batch_size=4)

    world, barrier, slots, outputs, sizes = 2, threading.Barrier(2), [None, None], [None, None], [0, 0]

    def gather(rank):
        def fn(local):
            sizes[rank] = len(local)
            slots[rank] = local
            barrier.wait()
            parts = list(slots)
            barrier.wait()
            return parts

        return fn

    def rank_main(rank):
        runner = ICLRunner(tasks)
        runner.prepare(tokenizer, model.config.block_size)
        outputs[rank] = runner.run(copy.deepcopy(model), tokenizer, 4, rank=rank, world_size=world, gather=gather(rank))

    threads = [threading.Thread(target=rank_main, args=(rank,)) for rank in range(world)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(size > 0 for size in sizes)  # both ranks scored a share
    for output in outputs:
        assert output.rows == expected.rows
        # other batch compositions: equal up to float rounding
        got = [ll for p in output.predictions for ll in p["loglikelihoods"]]
        want = [ll for p in expected.predictions for ll in p["loglikelihoods"]]
        assert got == pytest.approx(want, abs=1e-5)
