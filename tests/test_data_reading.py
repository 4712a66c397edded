"""Data is read as written, or refused with a message naming the row (issue 24, point 8): several acceptable golds
stay a list and any of them counts, a dataset's own columns reach the rewards untouched, rows without a question
are refused, damaged or ambiguous files are named, and prompts past the limits are counted aloud."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import httpx
import pytest
import test_user_errors
from test_user_errors import run_cli

from rlvr import GRPOConfig, GRPOTrainer
from rlvr.cli import main
from rlvr.data import DataError, load_problems
from rlvr.evaluation.evaluate import problem_record, score_completions
from rlvr.evaluation.inspect import analyse_completion
from rlvr.rewards import RemoteReward, get_reward, math_equal
from rlvr.server.app import GoldIndex, parse_request

inputs, no_model = test_user_errors.inputs, test_user_errors.no_model  # its fixtures

GOLDS = [
    {"question": "What is 2 + 3?", "answer": ["5", "five"]},
    {"question": "What is 1 + 1?", "answer": "2"},
]


def write(path: Path, rows: list[dict]) -> Path:
    """`rows` as the format of `path`'s suffix (no suffix: save_to_disk)."""
    ds = datasets.Dataset.from_list(rows) if path.suffix != ".jsonl" else None
    if path.suffix == ".jsonl":  # by hand: a column may be a list in one row and text in another
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    elif path.suffix == ".json":
        ds.to_json(path, lines=False)
    elif path.suffix == ".parquet":
        ds.to_parquet(path)
    else:
        ds.save_to_disk(path)
    return path


# ------------------------------------------------------------------------------ several acceptable golds
@pytest.mark.parametrize("name", ["data.jsonl", "data.json", "data.parquet", "saved"])
def test_a_list_of_golds_loads_as_a_list(tmp_path, name):
    rows = [
        {"question": "What is 2 + 3?", "answer": ["5", "five", "5"]},
        {"question": "q", "answer": ["#### 7"]},
    ]
    loaded = load_problems(str(write(tmp_path / name, rows)))
    # was: the text "['5', 'five', '5']"; repeats dropped, each gold read as any gold is (GSM8K's ####)
    assert [(r["answer"], r["ground_truth"]) for r in loaded] == [
        (["5", "five"], ["5", "five"]),
        (["7"], ["7"]),
    ]


@pytest.mark.parametrize("rows", [[{"question": "q", "answer": []}], [{"question": "q", "answer": [None]}]])
def test_an_empty_list_of_golds_is_no_gold(tmp_path, rows):
    assert load_problems(str(write(tmp_path / "d.jsonl", rows)))[0]["answer"] is None


# reward, completion, its reward against the golds ["5", "five"] (a match with either counts)
LIST_GOLD_CASES = [
    ("accuracy", r"so \boxed{5}", 1.0),  # was 0.0: the gold was the text "['5', 'five']"
    ("accuracy", r"so \boxed{five}", 1.0),
    ("accuracy", r"so \boxed{6}", 0.0),
    ("boxed_exact", r"\boxed{five}", 1.0),
    ("boxed_exact", r"\boxed{fiv}", 0.0),
    ("gsm8k_correctness", "<answer>five</answer>", 2.0),
    ("gsm8k_correctness", "<answer>5 apples</answer>", 1.5),  # numerically equal to one of them
    ("answer_tag_accuracy", "<answer>5</answer>", 1.0),
    ("math_verifier", "<think>2+3</think><answer>five</answer>", 1.5),
    ("length_penalty", r"\boxed{5}", 0.0),  # a group of one: no length spread
]


@pytest.mark.parametrize(("reward", "completion", "expected"), LIST_GOLD_CASES)
def test_any_gold_of_a_list_counts_in_the_rewards(tmp_path, reward, completion, expected):
    [row, _] = load_problems(str(write(tmp_path / "d.jsonl", GOLDS)))
    fn = get_reward(reward)
    assert fn(prompts=["q"], completions=[completion], answer=[row["answer"]]) == [expected]
    # TRL passes a dataset's list column as it is: the same row, not read by rlvr
    assert fn(prompts=["q"], completions=[completion], ground_truth=[["5", "five"]]) == [expected]


def test_any_gold_of_a_list_counts_in_eval_and_inspect(tmp_path):
    rows = load_problems(str(write(tmp_path / "d.jsonl", GOLDS)))
    completions = [r"\boxed{five}", r"\boxed{five}", r"\boxed{2}", r"\boxed{3}"]
    messages = [[{"role": "user", "content": r["question"]}] for r in rows]
    rewards = score_completions(get_reward("accuracy"), messages, completions, rows, num_samples=2)
    assert rewards == [1.0, 1.0, 1.0, 0.0]
    record = problem_record(
        0, rows[0], completions[:2], rewards[:2], [4, 4], [False] * 2, "boxed", math_equal
    )
    assert record["gold"] == ["5", "five"] and record["correct"] and record["maj_correct"]
    report = analyse_completion(
        {"completion": r"\boxed{five}", "answer": ["5", "five"], "rewards": {"a": 1.0}}
    )
    assert report["correct"] is True


def test_rlvr_eval_counts_any_gold_of_a_list(tiny_model_dir, tmp_path, monkeypatch):
    from rlvr.evaluation import evaluate as evaluation

    def five(model, tokenizer, prompt_texts, num_samples=1, *args, **kwargs):  # the model "answers" five
        n = len(prompt_texts) * num_samples
        return evaluation.Generations([r"so \boxed{five}"] * n, [5] * n, [False] * n, 0)

    monkeypatch.setattr(evaluation, "generate_completions", five)
    data, out = write(tmp_path / "d.jsonl", GOLDS), tmp_path / "eval"
    argv = ["eval", "--model", str(tiny_model_dir), "--dataset", str(data), "--split", "train"]
    assert (
        main([*argv, "--num-samples", "2", "--temperature", "1", "--no-progress", "--output", str(out)]) == 0
    )
    summary = json.loads((out / "summary.json").read_text())["metrics"]
    assert (summary["accuracy"], summary["maj@2"]) == (0.5, 0.5)  # right on ["5", "five"], wrong on "2"
    golds = [json.loads(line)["gold"] for line in (out / "predictions.jsonl").open()]
    assert golds == [["5", "five"], "2"]


def test_a_remote_reward_sends_a_list_of_golds_that_the_server_takes(tmp_path):
    sent = []

    def server(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, json={"rewards": [1.0, 0.0]})

    reward = RemoteReward("http://reward-server:6000/get_reward", retries=0)
    reward._client = httpx.Client(transport=httpx.MockTransport(server))
    reward(prompts=["a", "b"], completions=["5", "3"], answer=[["5", "five"], ["2"]])
    # several golds as a list, one as its text (what servers of other makes read)
    assert sent[0]["golden_responses"] == [["5", "five"], "2"]
    assert parse_request(sent[0])[2] == [["5", "five"], "2"]
    gold_file = tmp_path / "gold.jsonl"
    gold_file.write_text(json.dumps(GOLDS[0]) + "\n")
    assert GoldIndex.from_file(gold_file).lookup("What is 2 + 3?") == ["5", "five"]


def test_a_list_of_test_lines_is_the_code_rewards_tests(tmp_path):
    from rlvr.rewards.code import row_tests

    rows = [{"question": "Write f.", "answer": ["assert f(1) == 2", "assert f(2) == 3"]}]
    [row] = load_problems(str(write(tmp_path / "d.jsonl", rows)))
    [spec] = row_tests(1, answer=[row["answer"]])
    assert spec is not None and spec.kind == "asserts"  # was: the text "['assert f(1) == 2', ...]", not JSON


# ------------------------------------------------------------------------ a dataset's own columns are kept
def test_a_datasets_own_solution_column_reaches_the_rewards_untouched(tiny_model_dir, tmp_path):
    """TRL passes every dataset column but `prompt` to the reward functions as it is; so does rlvr, apart from
    `question`, `answer` and `ground_truth`, which it normalises."""
    rows = [
        {
            "question": f"What is {i} + 3?",
            "answer": f"{i} + 3\n#### {i + 3}",
            "solution": f"mine {i}",
            "id": i,
        }
        for i in range(2)
    ]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    seen: list[dict] = []

    def recorder(prompts, completions, **columns):
        seen.append(columns)
        return [0.0] * len(completions)

    config = GRPOConfig.from_dict(
        {
            "model": {"name_or_path": str(tiny_model_dir)},
            "data": {"dataset": str(data), "shuffle": False},
            "generation": {"num_generations": 2, "max_completion_length": 4},
            "training": {"output_dir": str(tmp_path / "run"), "max_steps": 1, "batch_size": 2},
            "algorithm": {"beta": 0.0},
        }
    )
    GRPOTrainer(config, reward_funcs=[recorder]).train()
    [columns] = seen
    row = rows[int(columns["id"][0])]
    assert columns["solution"] == [row["solution"]] * 2  # was: the GSM8K answer text, the user's column lost
    assert columns["answer"] == [str(row["id"] + 3)] * 2


@pytest.mark.parametrize("column", ["completions", "prompts", "completion_ids"])
def test_a_column_named_as_a_reward_argument_is_refused(tmp_path, column):
    """Was: `completions` a second value for the reward's argument, a TypeError after the model had generated;
    `completion_ids` replaced by the trainer's without a word."""
    rows = [{"question": "q", "answer": "1", column: ["x"]}]
    with pytest.raises(DataError, match=f"has a column named '{column}', which the reward functions receive"):
        load_problems(str(write(tmp_path / "d.jsonl", rows)))


def test_gsm8k_style_data_without_a_solution_column_gets_the_worked_solution(tmp_path):
    rows = [{"question": "q", "answer": "2 + 3 = 5\n#### 5"}]
    assert load_problems(str(write(tmp_path / "d.jsonl", rows)))[0]["solution"] == "2 + 3 = 5\n#### 5"


# ------------------------------------------------------------------------------ rows without a question
@pytest.mark.parametrize(
    ("questions", "message"),
    [
        (["a", "", "b"], "row 1 of {data} has no question (its question is empty)"),  # was: trained on ""
        (["a", "   \n\t"], "row 1 of {data} has no question (its question is empty)"),
        (["", None, " "], "row 0 of {data} has no question (its question is empty) (and 2 more: rows 1, 2)"),
        ([[{"role": "user", "content": "hi"}]], "row 0 of {data}: its question is a list, not text"),
    ],
)
def test_rows_without_a_question_are_refused(tmp_path, questions, message):
    data = write(tmp_path / "d.jsonl", [{"question": q, "answer": "1"} for q in questions])
    with pytest.raises(DataError) as info:
        load_problems(str(data))
    assert message.format(data=data) in str(info.value)


def test_train_refuses_empty_questions_before_the_model(inputs, no_model, capsys):
    (inputs / "blankq.jsonl").write_text('{"question": " ", "answer": "1"}\n')
    base = str(inputs / "base.yaml")
    code, err = run_cli(["train", "--config", base, f"data.dataset={inputs / 'blankq.jsonl'}"], capsys)
    assert code == 2 and "row 0 of" in err and "has no question (its question is empty)" in err, err


# ------------------------------------------------------------------------------ damaged and ambiguous data
def test_damaged_data_files_are_named(tmp_path):
    rows = [{"question": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(40)]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (tmp_path / "cut.jsonl").write_text(text[:-20])  # a copy cut short mid-line
    with pytest.raises(
        DataError, match=r"cut.jsonl line 40 is not valid JSON .*the file ends there, cut short"
    ):
        load_problems(str(tmp_path / "cut.jsonl"))
    # a byte that is not UTF-8 inside a string, or between the fields: was UnicodeDecodeError, or no line named
    for at, where in ((14, "row 0 of .*latin1.jsonl"), (6, "latin1.jsonl line 1")):
        (tmp_path / "latin1.jsonl").write_bytes(text[:at].encode() + b"\xff" + text[at:].encode())
        with pytest.raises(DataError, match=f"{where} is not UTF-8 text"):
            load_problems(str(tmp_path / "latin1.jsonl"))
    saved = write(tmp_path / "saved", rows)
    arrow = next(saved.glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])
    with pytest.raises(DataError, match="cannot read the saved dataset in .*save it again"):  # was OSError
        load_problems(str(saved))


def test_a_split_given_twice_in_a_folder_is_refused(tmp_path):
    folder = tmp_path / "mydata"
    folder.mkdir()
    write(folder / "train.jsonl", [{"question": "q", "answer": "1"}])
    write(folder / "train.parquet", [{"question": "q", "answer": "2"}])  # was: train.jsonl won, silently
    with pytest.raises(
        DataError, match=r"holds the 'train' split more than once \(train.jsonl, train.parquet\)"
    ):
        load_problems(str(folder))


def test_a_guessed_column_among_several_is_named(tmp_path, capsys):
    rows = [{"problem": "Long problem?", "question": "Title", "answer": "5", "solution": "2 + 3 = 5"}]
    load_problems(str(write(tmp_path / "d.jsonl", rows)))
    err = capsys.readouterr().err
    assert (
        "the question is read from column 'question' (it also has 'problem'); set data.question_field" in err
    )
    assert "the gold answer is read from column 'answer' (it also has 'solution')" in err
    load_problems(str(tmp_path / "d.jsonl"), question_field="problem", answer_field="answer")
    assert "note:" not in capsys.readouterr().err  # chosen, not guessed


# ------------------------------------------------------------------------------ prompts past the limits
def test_length_warnings_count_cut_prompts_and_prompts_past_the_context():
    from rlvr.data.lengths import EVAL_LIMITS, TRAIN_LIMITS, length_warnings

    # limit 100, completion budget 50, context 120: 90 + 50 > 120, and 150 is cut to 100, 100 + 50 > 120
    lines = length_warnings([10, 90, 150], 100, 50, 120, TRAIN_LIMITS)
    assert lines[0].startswith(
        "1 of 3 prompts are longer than data.max_prompt_length (100 tokens; the longest"
    )
    assert lines[1].startswith(
        "2 of 3 prompts (kept to 100 tokens) leave less than generation.max_completion_length"
    )
    assert length_warnings([10, 70], 100, 50, 120, EVAL_LIMITS) == []  # 70 + 50 = 120 fits exactly
    assert length_warnings([500], 512, 512, None, EVAL_LIMITS) == []  # a model that does not say its context


LONG = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. " * 2


def test_eval_and_train_say_how_many_prompts_are_cut(tiny_model_dir, tmp_path, capsys):
    data = write(tmp_path / "d.jsonl", [{"question": LONG + "What is 2 + 3?", "answer": "5"}])
    argv = ["eval", "--model", str(tiny_model_dir), "--dataset", str(data), "--split", "train"]
    argv += [
        "--max-prompt-length",
        "40",
        "--max-new-tokens",
        "480",
        "--output",
        str(tmp_path / "e"),
        "--no-progress",
    ]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert (
        "warning: 1 of 1 prompts are longer than --max-prompt-length (40 tokens" in err
    )  # was: nothing said
    assert "leave less than --max-new-tokens (480) of the model's context of 512 positions" in err
    config = GRPOConfig.from_dict(
        {
            "model": {"name_or_path": str(tiny_model_dir)},
            "data": {"dataset": str(data), "max_prompt_length": 40},
            "generation": {"num_generations": 2, "max_completion_length": 4},
            "training": {"output_dir": str(tmp_path / "run"), "max_steps": 1, "batch_size": 2},
            "algorithm": {"beta": 0.0},
        }
    )
    GRPOTrainer(config)
    assert (
        "1 of 1 training prompts are longer than data.max_prompt_length (40 tokens" in capsys.readouterr().err
    )
