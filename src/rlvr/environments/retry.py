"""The `retry` environment: a task with a verifier that tells the model its answer was wrong and lets it try
again, up to `environment.max_turns` replies.

Each reply is scored by a reward function of `rlvr.rewards` (default `accuracy`, called as rewards are: by
keyword, with the row's columns); the step's reward is that score. A score at or above `success` ends the
episode; otherwise the model reads `feedback` as a user message and answers again. The episode's reward
(`get_reward`) is the last reply's score: solving it on the third try is worth as much as on the first, and the
turns it took are in the trajectory for a reward function that wants to charge for them.
"""

from __future__ import annotations

from typing import Any

from rlvr.environments.base import Environment, Message, Step

DEFAULT_FEEDBACK = (
    "That answer is not correct. Check your work and give your final answer again, in the same format."
)


class RetryEnvironment(Environment):
    """Score each reply with `reward`; wrong answers get `feedback` and another turn.

    >>> env = RetryEnvironment()
    >>> env.reset(prompt=[{"role": "user", "content": "2 + 3?"}], answer="5")
    >>> env.step({"role": "assistant", "content": r"\\boxed{6}"}).done
    False
    >>> env.step({"role": "assistant", "content": r"\\boxed{5}"})
    Step(messages=[], done=True, reward=1.0, info={'score': 1.0})
    """

    def __init__(
        self, reward: str = "accuracy", success: float = 1.0, feedback: str = DEFAULT_FEEDBACK
    ) -> None:
        from rlvr.rewards.registry import get_reward

        self.reward_name = reward
        self.reward_fn = get_reward(reward)
        self.success = success
        self.feedback = feedback
        self.row: dict[str, Any] = {}
        self.last_score: float | None = None

    def reset(self, **row: Any) -> list[Message] | None:
        self.row = row
        self.last_score = None
        return None

    def step(self, message: Message) -> Step:
        columns = {key: [value] for key, value in self.row.items() if key != "prompt"}
        scores = self.reward_fn(
            prompts=[self.row.get("prompt")], completions=[message.get("content") or ""], **columns
        )
        if not isinstance(scores, (list, tuple)) or len(scores) != 1:
            raise ValueError(
                f"reward {self.reward_name!r} returned {scores!r} for one completion; expected one value"
            )
        score = None if scores[0] is None else float(scores[0])
        self.last_score = score
        if score is None or score >= self.success:  # None: no gold answer to check against, nothing to retry
            return Step(done=True, reward=score, info={"score": score})
        return Step(
            [{"role": "user", "content": self.feedback}], done=False, reward=score, info={"score": score}
        )

    def get_reward(self) -> float | None:
        return self.last_score
