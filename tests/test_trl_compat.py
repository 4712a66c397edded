"""rlvr rewards inside TRL's own GRPOTrainer: one step on a tiny model, the rewards called and logged."""

from __future__ import annotations

import math

import pytest

from rlvr.rewards import get_reward


@pytest.mark.parametrize("conversational", [True, False], ids=["chat-prompts", "text-prompts"])
def test_trl_grpo_trainer_takes_rlvr_rewards(tiny_model_dir, tmp_path, conversational):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    accuracy = get_reward("accuracy")
    calls = []

    def recording_accuracy(prompts, completions, **kwargs):
        calls.append({"prompts": prompts, "completions": completions, "columns": kwargs})
        return accuracy(prompts=prompts, completions=completions, **kwargs)

    questions = {"What is 2 + 3?": "5", "What is 3 + 4?": "7"}
    rows = [
        {
            "prompt": [{"role": "user", "content": question}] if conversational else f"Q: {question}\nA:",
            "answer": answer,
            "ground_truth": answer,
        }
        for question, answer in questions.items()
    ]
    args = GRPOConfig(
        output_dir=str(tmp_path),
        max_steps=1,
        per_device_train_batch_size=2,
        num_generations=2,
        max_completion_length=8,
        use_cpu=True,
        bf16=False,
        report_to="none",
        logging_steps=1,
        save_strategy="no",
    )
    rewards = ["xml_format", "math_verifier", "gsm8k_correctness", "overlong_penalty"]
    trainer = GRPOTrainer(
        model=str(tiny_model_dir),
        reward_funcs=[recording_accuracy, *(get_reward(name) for name in rewards)],
        args=args,
        train_dataset=Dataset.from_list(rows),
    )
    trainer.train()

    assert trainer.state.global_step == 1
    assert calls, "TRL never called the reward"
    call = calls[0]
    # Chat prompts get message-list completions, text prompts strings; columns are repeated per completion.
    if conversational:
        assert isinstance(call["completions"][0], list) and call["completions"][0][0]["role"] == "assistant"
    else:
        assert isinstance(call["completions"][0], str)
    assert len(call["columns"]["answer"]) == len(call["completions"])
    assert {"completion_ids", "trainer_state", "log_extra", "log_metric"} <= set(call["columns"])
    logged = trainer.state.log_history[0]
    for name in ["recording_accuracy", *rewards]:
        assert math.isfinite(logged[f"rewards/{name}/mean"]), name
    assert 0.0 <= logged["rewards/xml_format/mean"] <= 0.8
    assert -1.0 <= logged["rewards/overlong_penalty/mean"] <= 0.0
