"""A user's verifier and a user's TRL reward function, named in a recipe by dotted path
(tests/training/test_dpo_rlvr_cli.py::test_user_verifier_and_reward_function_by_dotted_path)."""

CALLS = {"verifier": 0, "reward": 0}


def has_digit(completion: str, ground_truth: str) -> float:
    """Verifier contract: ``fn(completion, ground_truth) -> score in [0, 1]``."""
    CALLS["verifier"] += 1
    return float(any(ch.isdigit() for ch in completion))


def brevity(prompts, completions, **kwargs) -> list[float]:
    """TRL reward-function contract: ``fn(prompts, completions, **dataset_columns) -> list[float]``."""
    CALLS["reward"] += 1
    assert "ground_truth" in kwargs  # the dataset's columns reach user reward functions too
    text = [c if isinstance(c, str) else "".join(m["content"] for m in c) for c in completions]
    return [-len(t) / 10 for t in text]
