"""Config loading, overrides, and errors raised before any model is loaded."""

import pytest

from rlvr.config import ConfigError, GRPOConfig, apply_overrides


def test_yaml_with_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("generation:\n  num_generations: 4\ntraining:\n  batch_size: 8\n  learning_rate: 1e-6\n")
    config = GRPOConfig.from_yaml(
        path,
        [
            "training.max_steps=7",
            "generation.temperature=0.7",
            "rewards.functions=[accuracy, xml_format]",
            "model.lora.enabled=true",
        ],
    )
    assert config.training.max_steps == 7
    assert config.training.learning_rate == 1e-6  # YAML reads 1e-6 as a string; it becomes a float
    assert config.generation.temperature == 0.7
    assert config.rewards.functions == ["accuracy", "xml_format"]
    assert config.model.lora.enabled is True
    # the resolved config round-trips through YAML
    again = tmp_path / "again.yaml"
    again.write_text(config.to_yaml())
    assert GRPOConfig.from_yaml(again) == config


def test_ints_are_accepted_where_floats_are_expected():
    assert GRPOConfig.from_dict({"algorithm": {"beta": 0}}).algorithm.beta == 0.0


@pytest.mark.parametrize(
    "raw, message",
    [
        (
            {"training": {"learning_rat": 1e-6}},
            r"unknown config key 'training.learning_rat'; did you mean "
            r"'training.learning_rate'",
        ),
        ({"trainin": {}}, r"unknown config key 'trainin'; did you mean 'training'"),
        ({"training": {"max_steps": "ten"}}, r"training.max_steps must be int, got 'ten'"),
        ({"training": {"bf16": 1}}, r"training.bf16 must be bool"),
        ({"algorithm": {"loss_type": "dapoo"}}, r"algorithm.loss_type must be one of .*did you mean 'dapo'"),
        (
            {"generation": {"num_generations": 1}, "training": {"batch_size": 4}},
            r"num_generations must be at least 2, got 1",
        ),
        (
            {"generation": {"num_generations": 4}, "training": {"batch_size": 6}},
            r"batch_size \(6\) must be divisible by generation.num_generations \(4\).*try batch_size=4",
        ),
        ({"rewards": {"functions": ["a", "b"], "weights": [1.0]}}, r"rewards.weights has 1 entries"),
        ({"training": {"report_to": ["mlflow"]}}, r"unknown loggers \['mlflow'\]"),
        ({"model": "gpt2"}, r"model must be a mapping"),
        ({"data": {"few_shot": "x"}}, r"data.few_shot must be a list"),
    ],
)
def test_bad_configs_name_the_problem(raw, message):
    with pytest.raises(ConfigError, match=message):
        GRPOConfig.from_dict(raw)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        GRPOConfig.from_yaml(tmp_path / "nope.yaml")


def test_override_without_equals_sign():
    with pytest.raises(ConfigError, match="key.sub=value"):
        apply_overrides({}, ["training.max_steps"])


def test_shipped_configs_load():
    from pathlib import Path

    configs = sorted(Path(__file__).parents[1].joinpath("configs").glob("*.yaml"))
    assert len(configs) >= 3
    for path in configs:
        GRPOConfig.from_yaml(path)
