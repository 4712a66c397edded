"""`bf16: auto`: bfloat16 only where the device computes it natively, the choice printed and recorded."""

import pytest
import torch
import yaml

from rlvr import GRPOConfig, GRPOTrainer
from rlvr.config import ConfigError
from rlvr.models import precision
from rlvr.models.precision import resolve_bf16

CPU = torch.device("cpu")


@pytest.fixture
def cpu_features(monkeypatch):
    """Pretend the CPU has the given bfloat16 instructions (AMX / AVX512-BF16), detection not overridden."""
    monkeypatch.delenv("RLVR_NATIVE_BF16", raising=False)

    def pretend(amx: bool, avx512_bf16: bool) -> None:
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)

    return pretend


@pytest.mark.parametrize(
    ("setting", "amx", "avx512_bf16", "use_bf16", "says"),
    [
        ("auto", True, False, True, "auto -> bfloat16 autocast (this CPU has AMX)"),
        ("auto", False, True, True, "auto -> bfloat16 autocast (this CPU has AVX512-BF16)"),
        ("auto", False, False, False, "auto -> float32 (cpu: no native bfloat16"),  # AVX2-only AMD: emulated
        (True, False, False, True, "emulated on this cpu"),  # the user asked: honoured, and warned
        (False, True, True, False, "false -> float32 (as set)"),
    ],
)
def test_auto_picks_bfloat16_only_where_the_cpu_has_it(
    cpu_features, setting, amx, avx512_bf16, use_bf16, says
):
    cpu_features(amx, avx512_bf16)
    chosen, why = resolve_bf16(setting, CPU)
    assert chosen is use_bf16
    assert says in why


def test_the_environment_overrides_the_detection(cpu_features, monkeypatch):
    cpu_features(amx=True, avx512_bf16=True)
    monkeypatch.setenv("RLVR_NATIVE_BF16", "0")
    assert resolve_bf16("auto", CPU)[0] is False
    monkeypatch.setenv("RLVR_NATIVE_BF16", "1")
    assert resolve_bf16("auto", CPU)[0] is True


def test_cpuinfo_is_read_where_torch_has_no_check(cpu_features, monkeypatch):
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    monkeypatch.setattr(precision, "_cpuinfo_flag", lambda flag: flag == "avx512_bf16")
    assert resolve_bf16("auto", CPU) == (True, "bf16: auto -> bfloat16 autocast (this CPU has AVX512-BF16)")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("auto", "auto"), (True, True), (False, False), (None, "error"), ("yes please", "error")],
)
def test_config_takes_auto_true_or_false(value, expected):
    raw = {"training": {"bf16": value}} if value is not None else {"training": {"bf16": 1}}
    if expected == "error":
        with pytest.raises(ConfigError, match=r"training.bf16 must be bool \| 'auto'"):
            GRPOConfig.from_dict(raw)
    else:
        assert GRPOConfig.from_dict(raw).training.bf16 == expected
    assert GRPOConfig().training.bf16 == "auto"  # the default


def test_the_run_prints_its_choice_first_and_records_it(tiny_model_dir, tmp_path, cpu_features, capsys):
    cpu_features(amx=False, avx512_bf16=False)
    config = GRPOConfig.from_dict(
        {
            "model": {"name_or_path": str(tiny_model_dir)},
            "generation": {"num_generations": 2, "max_completion_length": 4},
            "training": {"output_dir": str(tmp_path / "run"), "max_steps": 1, "batch_size": 2},
            "algorithm": {"beta": 0.0},
        }
    )
    assert config.training.bf16 == "auto"
    rows = [{"question": "1 + 1?", "answer": "2"}] * 2
    trainer = GRPOTrainer(
        config, reward_funcs=[lambda prompts, completions, **kw: [0.0] * len(prompts)], train_dataset=rows
    )
    first_line = capsys.readouterr().out.splitlines()[0]
    assert first_line.startswith("bf16: auto -> float32")
    assert trainer.autocast_dtype is None and trainer.config.training.bf16 is False
    trainer.train()
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["training"]["bf16"] is False


@pytest.mark.parametrize(
    ("argv", "expected"), [([], "auto"), (["--bf16"], True), (["--bf16", "false"], False)]
)
def test_eval_flag_defaults_to_auto(argv, expected):
    from rlvr.cli import build_parser

    args = build_parser("eval").parse_args(["eval", "--model", "m", "--output", "o", *argv])
    assert args.bf16 == expected
