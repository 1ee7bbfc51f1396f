"""The benchmark authors' own judge prompts, read at run time from the user's checkout of their repository.

    git clone https://github.com/lupantech/MathVista
    observe-r1 eval --benchmark MathVista/data/testmini.json --responses r.jsonl --out evals/official \\
        --judge-url http://127.0.0.1:8000/v1 --judge-model Qwen/Qwen2.5-7B-Instruct \\
        --judge-prompts official --benchmark-repo MathVista

observe-r1 holds none of the authors' prompt text. Their prompt files are parsed with :mod:`ast` and only string
literals assigned at module level are taken (``ast.literal_eval``): nothing in the checkout is imported or run. Each
request is one user message, built as the authors' scorer builds it:

=========  ==============================  =========================================================================
benchmark  file in the checkout            request
mathvista  evaluation/prompts/ext_ans.py   extraction: ``demo_prompt`` stripped, a blank line, the query, a blank
                                           line, the response, a blank line, ``Extracted answer: ``
                                           (``create_test_prompt`` in ``evaluation/extract_answer.py``)
mathverse  evaluation/prompts.py           extraction: ``demo_prompt_extract`` stripped, a blank line,
                                           ``Model response: '<response>'`` then a line ``Extracted Answer: ``
                                           (``extract_answer_s1.py``); score: ``demo_prompt_score`` stripped, with
                                           ``{question}``, ``{gt}`` and ``{extraction}`` filled in by
                                           :meth:`str.format` (``score_answer_s2.py``)
=========  ==============================  =========================================================================

The query is the problem as observe-r1 renders it (question, options, answer-form hint): the text the model was
asked; the response is sent whole, as the authors send it. Replies are read as the authors read them: the MathVista
extraction is the reply stripped; MathVerse's extraction drops an echoed ``Extracted Answer:``, and its score must be
``0`` or ``1`` once ``Judgement:`` is dropped (the authors re-ask until it is; at temperature 0 the same reply would
come back, so here the row keeps its rule reading and is counted as a failure). Both scorers allow the judge 256 new
tokens.

A checkout that lacks the file, or whose file does not assign the expected string (or whose MathVerse score prompt
does not take exactly ``{question}``, ``{gt}`` and ``{extraction}``), is a :class:`PromptFileError`: one line naming
the file.
"""

from __future__ import annotations

import ast
import hashlib
import json
import string
from pathlib import Path

from observe_r1.config import ConfigError

# benchmark -> (file under the checkout, names of the string constants it must assign, the authors' repository)
OFFICIAL_FILES = {
    "mathvista": ("evaluation/prompts/ext_ans.py", ("demo_prompt",), "lupantech/MathVista"),
    "mathverse": ("evaluation/prompts.py", ("demo_prompt_extract", "demo_prompt_score"), "ZrrSkywalker/MathVerse"),
}
OFFICIAL_TOKENS = 256  # max_tokens of both scorers' chat calls
SCORE_FIELDS = {"question", "gt", "extraction"}  # what score_answer_s2.py formats into demo_prompt_score


class PromptFileError(ConfigError):
    """A benchmark checkout that does not hold the prompt file or string expected; one line naming the file."""


def read_string_constants(path: Path, names: tuple[str, ...], repo: str) -> dict[str, str]:
    """The non-empty string literals assigned to ``names`` at the top level of the Python file ``path`` (the last
    assignment wins, as it would when Python runs the file), without running it.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "p.py"
    >>> _ = path.write_text('import os\\nA = "one"\\nA = ("t" "wo")\\nB: str = "three"\\nos.remove("x")\\n')
    >>> read_string_constants(path, ("A", "B"), "owner/name")
    {'A': 'two', 'B': 'three'}
    """
    where = f"(is --benchmark-repo the root of a checkout of {repo}?)"
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PromptFileError(f"{path}: not found {where}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise PromptFileError(f"{path}: unreadable ({type(err).__name__}) {where}") from None
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as err:
        raise PromptFileError(f"{path}: not valid Python (line {err.lineno}: {err.msg}) {where}") from None
    found: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Name) and target.id in names and node.value is not None:
                try:
                    found[target.id] = ast.literal_eval(node.value)
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    found[target.id] = None  # an expression, not a literal: we would have to run it
    for name in names:
        if not isinstance(found.get(name), str) or not found[name].strip():
            raise PromptFileError(f"{path}: assigns no non-empty string literal to {name} {where}")
    return {name: found[name] for name in names}


def _check_score_template(path: Path, template: str) -> None:
    """MathVerse's score prompt must take exactly the fields its scorer fills in, or ``str.format`` fails or drops
    the gold."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as err:
        raise PromptFileError(f"{path}: demo_prompt_score is not a str.format template ({err})") from None
    if fields != SCORE_FIELDS:
        raise PromptFileError(f"{path}: demo_prompt_score must take the fields {{question}}, {{gt}} and "
                              f"{{extraction}}; it takes {sorted(fields) or 'none'}")  # fmt: skip


def mathvista_request(demo: str, query: str, response: str) -> str:
    """MathVista's extraction request: the few-shot demo, the query and the response, then the cue.

    >>> mathvista_request(" DEMO\\n", "Q?", "It is 3.")
    'DEMO\\n\\nQ?\\n\\nIt is 3.\\n\\nExtracted answer: '
    """
    return f"{demo.strip()}\n\n{query}\n\n{response}\n\nExtracted answer: "


def mathverse_extract_request(demo: str, response: str) -> str:
    """MathVerse's step-1 request: the few-shot demo, then the response in single quotes and the cue.

    >>> mathverse_extract_request("DEMO", "It is 3.")
    "DEMO\\n\\nModel response: 'It is 3.'\\nExtracted Answer: "
    """
    return f"{demo.strip()}\n\nModel response: '{response}'\nExtracted Answer: "


def mathverse_score_request(template: str, question: str, gold: str, extraction: str) -> str:
    """MathVerse's step-2 request: the score prompt with the question, the gold and the extraction filled in.

    >>> mathverse_score_request(" Q={question} G={gt} E={extraction} ", "Area?", "4", "4 cm")
    'Q=Area? G=4 E=4 cm'
    """
    return template.strip().format(question=question, gt=gold, extraction=extraction)


class OfficialPrompts:
    """The authors' prompts for one benchmark, read from ``repo`` (a checkout of their repository): builds the
    requests and reads the replies as their scorer does (see the module's table). Same methods as
    :class:`observe_r1.judge.OwnPrompts`."""

    name = "official"
    extract_tokens = verdict_tokens = OFFICIAL_TOKENS

    def __init__(self, benchmark: str, repo: str | Path) -> None:
        if benchmark not in OFFICIAL_FILES:
            raise ConfigError(f"--judge-prompts official: observe-r1 reads the authors' prompts of "
                              f"{' and '.join(OFFICIAL_FILES)} only, not {benchmark}; judge it with observe-r1's "
                              f"prompts (drop --judge-prompts official)")  # fmt: skip
        relative, names, source = OFFICIAL_FILES[benchmark]
        self.benchmark, self.path = benchmark, Path(repo) / relative
        self.texts = read_string_constants(self.path, names, source)
        if benchmark == "mathverse":
            _check_score_template(self.path, self.texts["demo_prompt_score"].strip())
        self.sha256 = hashlib.sha256(json.dumps(self.texts, sort_keys=True).encode()).hexdigest()
        self.version = f"official-{benchmark}-{self.sha256[:12]}"

    def describe(self) -> dict:
        return {"prompts": self.name, "prompt_version": self.version, "prompt_sha256": self.sha256,
                "prompt_file": str(self.path)}  # fmt: skip

    def extraction_messages(self, benchmark: str, item: dict, response: str) -> list[dict]:
        if benchmark == "mathvista":
            text = mathvista_request(self.texts["demo_prompt"], item["problem"], response)
        else:
            text = mathverse_extract_request(self.texts["demo_prompt_extract"], response)
        return [{"role": "user", "content": text}]

    def equivalence_messages(self, item: dict, answer: str) -> list[dict]:
        text = mathverse_score_request(self.texts["demo_prompt_score"], item["problem"], item["answer"], answer)
        return [{"role": "user", "content": text}]

    def parse_extraction(self, reply: str) -> str:
        """MathVista keeps the whole reply; MathVerse drops an echoed cue (``extract_answer_s1.py``)."""
        reply = reply.strip()
        return reply if self.benchmark == "mathvista" else reply.replace("Extracted Answer: ", "").strip()

    def parse_equivalence(self, reply: str) -> bool | None:
        """``1`` / ``0`` once ``Judgement:`` is dropped; anything else is no verdict."""
        verdict = reply.strip().replace("Judgement:", "").strip()
        return {"1": True, "0": False}.get(verdict)
