"""Datasets by name or path, gold answers, prompt templates, left truncation."""

import json

import datasets
import pytest

from rlvr.data import DataError, build_messages, load_problems, parse_gsm8k_answer, render_prompt
from rlvr.rollout import tokenize_prompts


@pytest.mark.parametrize(
    "text, expected",
    [
        ("48 + 24 = 72\n#### 72", "72"),
        ("#### 1,000", "1000"),  # commas removed
        ("a #### 3 then #### -4", "-4"),  # the last marker wins
        ("no marker", None),
    ],
)
def test_parse_gsm8k_answer(text, expected):
    assert parse_gsm8k_answer(text) == expected


def test_gsm8k_by_name_from_a_data_dir(tmp_path, gsm8k_rows):
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "train.jsonl").write_text("\n".join(json.dumps(r) for r in gsm8k_rows))
    rows = load_problems("gsm8k", "train", data_dir=str(tmp_path), limit=3)
    assert len(rows) == 3
    assert rows[0]["question"] == gsm8k_rows[0]["question"]
    assert rows[0]["answer"] == rows[0]["ground_truth"] == gsm8k_rows[0]["answer"].split("####")[1].strip()
    assert rows[0]["solution"] == gsm8k_rows[0]["answer"]  # the worked solution is kept


def test_data_dir_from_the_environment(tmp_path, gsm8k_rows, monkeypatch):
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_text(json.dumps(gsm8k_rows[0]))
    monkeypatch.setenv("RLVR_DATA_DIR", str(tmp_path))
    assert len(load_problems("gsm8k", "test")) == 1


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet"])
def test_files_of_each_format(tmp_path, fmt):
    ds = datasets.Dataset.from_list(
        [{"problem": "1 + 1?", "solution": "2"}, {"problem": "2 + 2?", "solution": "4"}]
    )
    path = tmp_path / f"data.{fmt}"
    {
        "jsonl": lambda: ds.to_json(path),
        "json": lambda: ds.to_json(path, lines=False),
        "csv": lambda: ds.to_csv(path),
        "parquet": lambda: ds.to_parquet(path),
    }[fmt]()
    rows = load_problems(str(path))
    assert [(r["question"], r["answer"]) for r in rows] == [("1 + 1?", "2"), ("2 + 2?", "4")]


def test_a_saved_dataset_directory_and_custom_fields(tmp_path):
    ds = datasets.DatasetDict({"train": datasets.Dataset.from_list([{"q": "3 * 3?", "gold": 9.0}])})
    ds.save_to_disk(tmp_path / "saved")
    rows = load_problems(str(tmp_path / "saved"), question_field="q", answer_field="gold")
    assert rows[0]["question"] == "3 * 3?" and rows[0]["answer"] == "9"  # 9.0 read as the integer it is


def test_a_missing_field_lists_the_columns(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"text": "x", "label": "1"}))
    with pytest.raises(DataError, match=r"no question column found .*columns are \['text', 'label'\]"):
        load_problems(str(path))
    with pytest.raises(DataError, match=r"data.answer_field='gold' is not a column .*\['text', 'label'\]"):
        load_problems(str(path), question_field="text", answer_field="gold")


def test_unreachable_hub_without_local_copy_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # fail at once instead of retrying the network
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    with pytest.raises(DataError, match=r"could not load 'openai/gsm8k'.*Set data.data_dir or RLVR_DATA_DIR"):
        load_problems("gsm8k", data_dir=str(tmp_path))


def test_unknown_names_and_missing_splits(tmp_path):
    with pytest.raises(DataError, match="not a file, a directory, a known name"):
        load_problems("no_such_dataset")
    (tmp_path / "svamp").mkdir()
    with pytest.raises(DataError, match=r"holds no 'train' split"):
        load_problems("svamp", "train", data_dir=str(tmp_path))


@pytest.mark.parametrize(
    "template, first_role, needle",
    [
        ("boxed", "system", "\\boxed{}"),
        ("xml_reasoning", "system", "<reasoning>"),
        ("think_answer", "system", "<think>"),
        ("answer_tag", "system", "<answer></answer>"),
        ("plain", "user", "What is 2 + 3?"),
    ],
)
def test_templates(template, first_role, needle):
    messages = build_messages("What is 2 + 3?", template)
    assert messages[0]["role"] == first_role and needle in messages[0]["content"]
    assert messages[-1] == {"role": "user", "content": "What is 2 + 3?"}


def test_answer_tag_has_a_few_shot_turn_and_config_overrides():
    messages = build_messages("Q?", "answer_tag")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    custom = build_messages(
        "Q?", "boxed", system_prompt="Be brief.", few_shot=[{"question": "1+1?", "answer": "2"}]
    )
    assert custom[0]["content"] == "Be brief." and custom[2] == {"role": "assistant", "content": "2"}
    with pytest.raises(ValueError, match="unknown template"):
        build_messages("Q?", "yaml")


def test_long_prompts_are_cut_from_the_left_and_counted(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.padding_side = "left"
    texts = [
        render_prompt(tokenizer, build_messages("What is 2 + 3?", "plain")),
        render_prompt(tokenizer, build_messages("apples " * 200, "plain")),
    ]
    ids, mask, cut = tokenize_prompts(tokenizer, texts, max_prompt_length=32, device="cpu")
    assert cut == 1 and ids.shape[1] == 32
    full = tokenizer(texts[1], add_special_tokens=False)["input_ids"]
    assert ids[1].tolist() == full[-32:]  # the end (the question's last words and the assistant turn) is kept
    short = tokenizer(texts[0], add_special_tokens=False)["input_ids"]
    assert mask[0].sum() == len(short) and mask[0, 0] == 0  # padded on the left


def test_generated_arithmetic_is_deterministic_correct_and_disjoint():
    train = load_problems("arithmetic", "train")
    test = load_problems("arithmetic", "test")
    assert len(train) == 3000 and len(test) == 300
    assert load_problems("arithmetic", "test")[:5] == test[:5]  # the same rows every time
    assert not {r["question"] for r in train} & {r["question"] for r in test}
    for row in test[:50]:
        question = row["question"]
        if question.startswith("What is") and " + " in question:
            a, b = question[len("What is ") : -1].split(" + ")
            assert int(row["answer"]) == int(a) + int(b)
