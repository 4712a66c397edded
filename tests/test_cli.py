"""The `rlvr` command's own subcommands (eval/compare/plot/inspect/serve-rewards have their own tests)."""

from rlvr.cli import main


def test_generate_prints_each_sample(tiny_model_dir, capsys):
    code = main(
        [
            "generate",
            "--model",
            str(tiny_model_dir),
            "--prompt",
            "What is 2 + 3?",
            "--max-new-tokens",
            "6",
            "--temperature",
            "1.0",
            "--num-samples",
            "2",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "--- sample 1" in out and "--- sample 2" in out


def test_train_reports_config_errors_without_a_traceback(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("generation:\n  num_generations: 1\n")
    assert main(["train", "--config", str(config)]) == 2
    assert "num_generations must be at least 2" in capsys.readouterr().err
