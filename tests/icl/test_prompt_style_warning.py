"""A run that trains on prompts in another format than the one its ICL tasks score is warned about, when it starts."""

import warnings

import pytest

from lightning_adapt import FineTuning, ICLEvaluation, Instructions, LoRA
from lightning_adapt.icl.callback import PromptStyleWarning
from tests.helpers import quiet_trainer
from tests.icl.conftest import reviews, write_jsonl


def fit(tmp_path, checkpoint, task, prompt_style):
    train = write_jsonl(tmp_path / "train.jsonl", reviews(8, 5))
    data = Instructions(str(train), val_path=str(train), instruction_template="Review: {text}\nSentiment:",
                        output_template=" {label}", prompt_style=prompt_style, batch_size=4)
    module = FineTuning(checkpoint, lora=LoRA(r=2), max_seq_length=192, export=False)
    trainer = quiet_trainer(tmp_path, max_steps=1, limit_val_batches=0, callbacks=[ICLEvaluation(task, batch_size=8)])
    trainer.fit(module, datamodule=data)


def test_a_chat_prompt_style_in_training_is_warned_about_naming_the_tasks(tmp_path, tiny_checkpoint, sentiment_task):
    with pytest.warns(PromptStyleWarning, match=r"prompt style SmolLM2 \(e.g. '<\|im_start\|>system.*<\|im_start\|>user"
                                                r"\\nReview: .*ICL tasks sent are scored on their raw templates.*"
                                                r"prompt_style to `default`"):
        fit(tmp_path, tiny_checkpoint, sentiment_task(), "smollm2")


def test_the_default_prompt_style_trains_on_what_the_tasks_score_and_is_not_warned_about(
        tmp_path, tiny_checkpoint, sentiment_task):
    with warnings.catch_warnings():
        warnings.simplefilter("error", PromptStyleWarning)
        fit(tmp_path, tiny_checkpoint, sentiment_task(), None)
