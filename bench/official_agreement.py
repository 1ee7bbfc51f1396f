"""observe-r1's official figures next to the figures the benchmark authors' own evaluation code gives, on the same
answers, for MATH-V, MathVista, We-Math and LogicVista.

    .venv/bin/python bench/official_agreement.py --repos DIR [--benchmarks DIR] \
        [--out bench/results/official_agreement] [--official-python PY] [--only mathvista wemath] [--seed 0]
    .venv/bin/python bench/official_agreement.py --repos DIR --theirs-only     # the authors' side alone
    .venv/bin/python bench/official_agreement.py --repos DIR --plain    # only gold/wrong/empty answers

``--repos DIR`` holds the authors' GitHub repositories as published: ``DIR/MathVista``, ``DIR/MATH-V``,
``DIR/We-Math``, ``DIR/LogicVista`` (text files are enough; no image is opened). Nothing is fetched at run time.
The benchmark files are read from those repositories (``data/...``); ``--benchmarks DIR`` reads them instead from
``DIR/<name>/full/`` (a folder of the complete published files).

For every row of each FULL benchmark file the script crafts one response (seeded): the gold answer, the gold as
option text, the gold in other forms (``(B)``, ``\\boxed{..}``, ``7.0``, extra decimals, lower case, letters in
another order), wrong answers and empty answers, so that right and wrong verdicts, and the authors' quirks, are
all exercised; each as ``<observe>..</observe> <think>..</think> <answer>ANSWER</answer>``, written to
``OUT/<bench>/responses.jsonl`` (the form used per row in ``forms.json``). Then:

1. ours: ``observe-r1 eval --benchmark FILE --responses responses.jsonl --out OUT/<bench>/ours`` and its
   ``results.json["official"]["sample_0"]`` (the script stops with a clear message if that block is missing)
   and ``predictions.jsonl`` (``extracted``: the text inside ``<answer>``; ``official``: the per-row verdict);
2. theirs: the authors' code, run on the SAME extracted answers by ``--official-python`` in a subprocess (this
   same file, called with ``--authors-side``), each fed where their pipeline expects a model's answer, skipping
   only LLM steps:
   - MathVista ``evaluation/calculate_score.py``: imported, ``main()`` run with argv on a JSON keyed by pid in
     their format (``choices, question_type, answer_type, precision, answer, metadata`` and ``extraction`` = our
     extracted answer: their GPT extraction step is the one skipped). Stand-ins: ``datasets.load_dataset``
     (returns nothing; every entry carries its ``answer``, so it is never needed) and the repo's
     ``utilities`` module (only ``read_json``/``save_json`` are used; the real one imports cv2/PIL/word2number).
   - MATH-V ``evaluation/evaluate.py`` + ``utils.py``: imported with the benchmark file as ``./data/test.jsonl``
     in a work folder; ``evaluate(file, regen_answer=True)`` then ``math_level_subject_acc(file)`` on a JSONL
     of ``{"id", "response": extracted}`` (their published run re-extracts from ``response``: their rule-based
     ``find_math_answer`` cleanup applies to our extracted answer). Reported apart: the same with
     ``{"id", "model_answer": extracted}`` and ``regen_answer=False`` (our answer used as their final answer).
     ``fire`` is stubbed when absent (imported, never used).
   - We-Math ``evaluation/four_dimensional_metrics.py`` and ``evaluation/accuracy.py``: imported; their
     functions run on the testmini rows with ``response`` = extracted (their letter reading: text after the last
     ``Answer``, ``> < : .`` removed, first character if in A–H). Four dimensions from ``calculate_metrics`` /
     ``compute_final_scores`` counts; the score and the rates are recomputed exactly from their counts with
     their formulas and checked against their own two-decimal strings; the step accuracies are the means of the
     frames built by their ``process_steps_data`` / ``evaluate_steps`` (as their ``update_main_results_df``).
   - LogicVista ``eval/extract_accuracy.py`` and ``eval/analyze_accuracy.py`` are scripts (no functions, module
     level code that calls GPT-4 through langchain): both run unmodified with ``runpy``/``exec`` in a work folder
     holding a ``constants.py``, ``answers/bench-answers.json`` (``{id: {"answer": extracted}}``) and a copy of
     ``dataset.json``. langchain is replaced by stand-ins: the "LLM" answers with the letters of the text it is
     asked about (its single-character alphanumeric tokens, upper-cased; ``ZZZZZ`` when there are none), which
     stands in for GPT-4's letter extraction (their code sends a response to the LLM only when it is not one
     character long). The current ``dataset.json`` no longer has the ``capability`` field their script reads (it
     has ``broad_capability`` / ``specific_capability``), so the copy gets ``capability`` = one of them; the
     script is run twice (broad → ``per_capability``, specific → ``per_specific_capability``).
     ``analyze_accuracy.py``'s hard-coded capability list (old names) is extended by the values of that field and
     run with their rule (substring of the stored list, category name with its spaces removed: ``diagram`` also
     counts ``diagram and ocr`` rows, and a name with spaces matches nothing, so it has no figure of theirs);
     ``colorama`` stubbed when absent; its printed counts are read.
``--plain`` crafts only the forms every scorer reads alike (the gold, the gold letter, a wrong answer, an empty
one), so that any remaining difference comes from aggregation or from the gold itself, not from answer reading.

3. each figure's difference (ours − theirs) into ``OUT/official_agreement.json`` and ``OUT/official_agreement.md``,
   and, per benchmark, how many rows the per-row verdicts disagree on (with examples and their forms).

Bench-only requirements of the authors' code (NOT project dependencies; keep them out of the project's venv,
whose pandas 3 and antlr 4.13 break it): a separate interpreter given as ``--official-python`` (or
``OFFICIAL_PYTHON``), e.g.::

    python3 -m venv /tmp/official_venv
    /tmp/official_venv/bin/pip install "pandas<3" numpy Levenshtein latex2sympy2 tqdm rich pydantic fire colorama

pandas < 3: MathVista's per-skill loop indexes a pid-indexed Series by position, which pandas 3 refuses, and
We-Math uses ``DataFrame._append``. ``latex2sympy2`` (the original, which pins antlr4-python3-runtime 4.7.2) is
what MATH-V's ``utils.py`` imports; ``latex2sympy2_extended`` is a different package. Levenshtein: MathVista's
edit distance. Everything else in the main process is the standard library.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve()
REPO_ROOT = HERE.parents[1]
BENCHMARKS = {
    "mathvision": {"repo": "MATH-V", "file": "mathvision/full/test.jsonl", "in_repo": "data/test.jsonl"},
    "mathvista": {"repo": "MathVista", "file": "mathvista/full/testmini.json", "in_repo": "data/testmini.json"},
    "wemath": {"repo": "We-Math", "file": "wemath/full/testmini.json", "in_repo": "data/testmini.json"},
    "logicvista": {"repo": "LogicVista", "file": "logicvista/full/dataset.json", "in_repo": "data/dataset.json"},
}
# Figures that must agree exactly (ours − theirs == 0).
TARGETS = {
    "mathvision": {"accuracy"},
    "mathvista": {"accuracy"},
    "wemath": {"score_strict", "score_loose"}
    | {f"{k}/{p}" for k in ("IK", "IG", "CM_strict", "CM_loose", "RM_strict", "RM_loose") for p in ("count", "rate")},
    "logicvista": {"accuracy"},
}
LETTERS = "ABCDEFGH"
OBSERVATIONS = [
    "The figure shows the shapes and the numbers written on them.",
    "I see a diagram with labels.",
    "The image has a chart with several bars.",
    "A drawing with marked lengths and angles.",
]
THOUGHTS = [
    "Work through the given values step by step.",
    "Compare each option with what the figure shows.",
    "Use the relation between the labelled parts.",
]
EPS = 1e-9


# ----------------------------------------------------------------------------------------------------------------
# Benchmark rows and observe-r1 ids


def read_rows(name: str, path: Path) -> list[tuple[str, dict]]:
    """(observe-r1 item id, row) in file order."""
    if name == "mathvision":
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [(str(r["id"]), r) for r in rows]
    data = json.loads(path.read_text(encoding="utf-8"))
    if name == "mathvista":
        return [(str(r["pid"]), r) for r in data.values()]
    if name == "wemath":
        return [(str(r["question number"]), r) for r in data]
    if name == "logicvista":
        return [(key, r) for key, r in data.items()]
    raise ValueError(name)


# ----------------------------------------------------------------------------------------------------------------
# Crafted answers


# The forms every scorer must read alike; ``--plain`` crafts only these (checks the aggregation by itself).
PLAIN_FORMS = {"gold", "letter", "wrong", "wrong_letter", "empty"}
PLAIN = False


def _pick(rng: random.Random, weighted: list[tuple[str, float, str | None]]) -> tuple[str, str]:
    """(form, answer) from (form, weight, answer) entries whose answer is not None."""
    usable = [(form, weight, answer) for form, weight, answer in weighted if answer is not None]
    if PLAIN and any(form in PLAIN_FORMS for form, _, _ in usable):
        usable = [entry for entry in usable if entry[0] in PLAIN_FORMS]
    form, _, answer = rng.choices(usable, weights=[w for _, w, _ in usable])[0]
    return form, answer


def _number(text: str) -> float | None:
    try:
        value = float(str(text).strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _other(rng: random.Random, pool: list[str], not_this: str) -> str | None:
    others = [x for x in pool if x != not_this]
    return rng.choice(others) if others else None


def _thousands(gold: str, rng: random.Random) -> str | None:
    """An integer gold of 4+ digits written with a thousands separator as models write them."""
    if not re.fullmatch(r"-?\d{4,}", gold):
        return None
    grouped = f"{int(gold):,}"
    return grouped.replace(",", rng.choice([",", "{,}", "\\,", ",\\!", " "]))


def _real_forms(rng: random.Random, gold: str, weight: float) -> list[tuple[str, float, str | None]]:
    """Forms real models write around a final answer (weights sum to ``weight``): LaTeX spacing and thousands
    separators, a unit, ``\\text{}``, a percent sign, a trailing period, a leading "The answer is", math mode."""
    unit = rng.choice([" cm", "\\text{ cm}", " m^2", "^\\circ", "°", " units", "\\text{km}"])
    number = _number(gold) is not None
    forms = [
        ("thousands", 0.2, _thousands(gold, rng)),
        ("unit", 0.15, f"{gold}{unit}" if number else None),
        ("text_wrapped", 0.1, f"\\text{{{gold}}}"),
        ("percent", 0.1, gold + rng.choice(["%", "\\%"]) if number else None),
        ("trailing_period", 0.15, f"{gold}."),
        ("answer_is", 0.15, f"{rng.choice(['The answer is', 'The final answer is', 'Answer:'])} {gold}"),
        ("math_mode", 0.1, rng.choice([f"${gold}$", f"\\({gold}\\)"])),
        ("spaced", 0.05, f" {gold} " if number else None),
    ]
    usable = sum(w for _, w, a in forms if a is not None)
    return [(f, w * weight / usable, a) for f, w, a in forms]


def craft_mathvista(rng: random.Random, row: dict) -> tuple[str, str]:
    gold = str(row["answer"])
    if row["question_type"] == "multi_choice":
        choices = [str(c) for c in row["choices"]]
        index = choices.index(gold) if gold in choices else 0
        letter = LETTERS[index] if index < len(LETTERS) else "A"
        wrong = [i for i, c in enumerate(choices) if c != gold and i < len(LETTERS)]
        wrong_index = rng.choice(wrong) if wrong else None
        return _pick(
            rng,
            [
                ("letter", 0.22, letter),
                ("paren_letter", 0.13, f"({letter})"),
                ("option_text", 0.2, gold),
                ("paren_letter_text", 0.05, f"({letter}) {gold}"),
                ("lower_letter", 0.05, letter.lower()),
                ("wrong_letter", 0.13, LETTERS[wrong_index] if wrong_index is not None else None),
                ("wrong_text", 0.12, choices[wrong_index] if wrong_index is not None else None),
                ("free_text", 0.04, "none of these"),
                ("empty", 0.06, ""),
                ("answer_is_letter", 0.05, f"The answer is {letter}."),
                ("letter_period", 0.04, f"{letter}."),
                ("option_text_period", 0.03, f"{gold}."),
            ],
        )
    value = _number(gold)
    if row["answer_type"] == "integer" and value is not None:
        return _pick(
            rng,
            [
                *_real_forms(rng, gold, 0.25),
                ("gold", 0.35, gold),
                ("gold_point_zero", 0.12, f"{gold}.0"),
                ("gold_plus_fraction", 0.08, f"{gold}.4"),
                ("wrong", 0.3, str(int(value) + 1)),
                ("words", 0.08, "seven"),
                ("empty", 0.07, ""),
            ],
        )
    if row["answer_type"] == "float" and value is not None:
        precision = int(row.get("precision") or 0)
        return _pick(
            rng,
            [
                *_real_forms(rng, gold, 0.25),
                ("gold", 0.35, gold),
                ("gold_trailing_zero", 0.1, gold + "0" if "." in gold else gold + ".0"),
                ("gold_extra_digit", 0.12, gold + "1" if "." in gold else gold + ".01"),
                ("wrong", 0.3, f"{value + 1:.{precision}f}"),
                ("empty", 0.13, ""),
            ],
        )
    return _pick(
        rng,
        [
            *_real_forms(rng, gold, 0.2),
            ("gold", 0.45, gold),
            ("gold_no_spaces", 0.15, gold.replace(" ", "")),
            ("wrong", 0.3, "[0, 0]"),
            ("empty", 0.1, ""),
        ],
    )


def craft_mathvision(rng: random.Random, row: dict) -> tuple[str, str]:
    gold = str(row["answer"])
    options = [str(o) for o in row.get("options") or []]
    if options:
        letters = LETTERS[: len(options)]
        index = letters.find(gold) if len(gold) == 1 else -1
        text = options[index] if index >= 0 and options[index] not in (gold, "") else None
        return _pick(
            rng,
            [
                ("letter", 0.3, gold),
                ("paren_letter", 0.1, f"({gold})"),
                ("boxed_letter", 0.08, f"\\boxed{{{gold}}}"),
                ("lower_letter", 0.05, gold.lower()),
                ("option_text", 0.12, text),
                ("option_text_no_math", 0.05, text.strip("$") if text and text.startswith("$") else None),
                ("option_text_period", 0.03, f"{text}." if text else None),
                ("answer_is_letter", 0.05, f"The answer is {gold}."),
                ("letter_period", 0.04, f"{gold}."),
                ("wrong_letter", 0.25, _other(rng, list(letters), gold)),
                ("empty", 0.05, ""),
            ],
        )
    value = _number(gold)
    return _pick(
        rng,
        [
            *_real_forms(rng, gold, 0.3),
            ("gold", 0.3, gold),
            ("boxed", 0.1, f"\\boxed{{{gold}}}"),
            ("two_decimals", 0.1, f"{value:.2f}" if value is not None else None),
            ("near", 0.07, f"{value + 0.001:.3f}" if value is not None else None),
            ("wrong", 0.33, f"{value + 1:g}" if value is not None else "0"),
            ("empty", 0.05, ""),
            ("words", 0.05, "cannot be determined"),
        ],
    )


def wemath_options(option: str) -> dict[str, str]:
    """Letter → option text, split on the ``X.`` labels themselves (separators vary or go missing)."""
    marks = list(re.finditer(r"(?:^|(?<=[;\s]))([A-H])\.\s*", option))
    out = {}
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(option)
        out.setdefault(mark.group(1), option[mark.end() : end].strip().rstrip(";").strip())
    return out


def craft_wemath(rng: random.Random, row: dict) -> tuple[str, str]:
    gold = str(row["answer"]).strip()
    options = wemath_options(str(row.get("option", "")))
    text = options.get(gold) or None
    return _pick(
        rng,
        [
            ("letter", 0.42, gold),
            ("paren_letter", 0.08, f"({gold})"),
            ("letter_dot_text", 0.08, f"{gold}. {text}" if text else None),
            ("option_text", 0.07, text),
            ("lower_letter", 0.04, gold.lower()),
            ("answer_is_letter", 0.05, f"The answer is {gold}."),
            ("answer_colon", 0.05, f"Answer: {gold}."),
            ("letter_period", 0.04, f"{gold}."),
            ("wrong_letter", 0.27, _other(rng, list(options) or list("ABCD"), gold)),
            ("empty", 0.04, ""),
        ],
    )


def craft_logicvista(rng: random.Random, row: dict) -> tuple[str, str]:
    gold = str(row["answer"]).strip()
    if not gold:
        return _pick(rng, [("empty", 0.5, ""), ("wrong_letter", 0.5, rng.choice("ABCD"))])
    letters = [x.strip() for x in gold.split(",") if x.strip()]
    single = len(letters) == 1
    if not single:  # only a few rows: each of their forms is likely to show up
        return _pick(
            rng,
            [
                ("gold", 0.25, gold),
                ("reversed", 0.25, ", ".join(reversed(letters))),
                ("no_space", 0.15, ",".join(letters)),
                ("partial", 0.15, letters[0]),
                ("lower", 0.05, gold.lower()),
                ("wrong_letter", 0.1, _other(rng, list("ABCDE"), gold)),
                ("empty", 0.05, ""),
            ],
        )
    return _pick(
        rng,
        [
            ("gold", 0.38, gold),
            ("paren_letter", 0.1, f"({gold})"),
            ("lower", 0.05, gold.lower()),
            ("answer_is_letter", 0.05, f"The answer is {gold}."),
            ("letter_period", 0.05, f"{gold}."),
            ("wrong_letter", 0.37, _other(rng, list("ABCDE"), gold)),
            ("empty", 0.1, ""),
        ],
    )


CRAFTERS = {
    "mathvista": craft_mathvista,
    "mathvision": craft_mathvision,
    "wemath": craft_wemath,
    "logicvista": craft_logicvista,
}


def craft(name: str, rows: list[tuple[str, dict]], seed: int) -> dict[str, dict]:
    """id → {"answer", "form", "response"}."""
    rng = random.Random(f"{name}-{seed}")
    out = {}
    for item_id, row in rows:
        form, answer = CRAFTERS[name](rng, row)
        response = (
            f"<observe>{rng.choice(OBSERVATIONS)}</observe> <think>{rng.choice(THOUGHTS)}</think> "
            f"<answer>{answer}</answer>"
        )
        out[item_id] = {"answer": answer, "form": form, "response": response}
    return out


# ----------------------------------------------------------------------------------------------------------------
# Ours: observe-r1 eval


def observe_r1_command() -> list[str]:
    local = Path(sys.executable).parent / "observe-r1"
    if local.exists():
        return [str(local)]
    found = shutil.which("observe-r1")
    if found:
        return [found]
    return [sys.executable, "-m", "observe_r1.cli"]


def run_ours(benchmark: Path, responses: Path, out: Path) -> tuple[dict, dict[str, dict]]:
    """(official figures of sample 0, id → prediction row of sample 0)."""
    cmd = [
        *observe_r1_command(),
        "eval",
        "--benchmark",
        str(benchmark),
        "--responses",
        str(responses),
        "--out",
        str(out),
    ]
    print("  ours:", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True)
    (out / "eval.log").parent.mkdir(parents=True, exist_ok=True)
    (out / "eval.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"observe-r1 eval failed ({done.returncode}); see {out / 'eval.log'}:\n{done.stderr[-2000:]}")
    results = json.loads((out / "results.json").read_text())
    official = results.get("official")
    if not isinstance(official, dict) or not official:
        raise SystemExit(
            f"{out / 'results.json'} has no 'official' block: this observe-r1 does not compute the "
            "benchmarks' official figures yet (use --theirs-only to run the authors' side alone)"
        )
    figures = official.get("sample_0", official)
    predictions: dict[str, dict] = {}
    for line in (out / "predictions.jsonl").read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            if row.get("sample", 0) == 0:
                predictions.setdefault(str(row["id"]), row)
    return figures, predictions


def verdict(value) -> bool | None:
    if isinstance(value, dict):
        for key in ("correct", "official", "verdict", "true_false"):
            if key in value:
                return verdict(value[key])
        return None
    if value is None:
        return None
    return bool(value)


# ----------------------------------------------------------------------------------------------------------------
# Theirs: subprocess driver


def run_theirs(name: str, repo: Path, benchmark: Path, extracted: dict[str, str], work: Path, python: str) -> dict:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    job = {"repo": str(repo), "benchmark": str(benchmark), "extracted": extracted, "work": str(work)}
    (work / "job.json").write_text(json.dumps(job))
    cmd = [python, str(HERE), "--authors-side", name, str(work / "job.json")]
    print("  theirs:", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True)
    (work / "authors.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise SystemExit(
            f"the authors' {name} code failed ({done.returncode}); see {work / 'authors.log'}:\n{done.stderr[-3000:]}"
        )
    return json.loads((work / "theirs.json").read_text())


def check_official_python(python: str, names: list[str]) -> None:
    needs = {
        "mathvista": ["pandas", "Levenshtein", "rich", "tqdm"],
        "mathvision": ["latex2sympy2", "numpy", "tqdm"],
        "wemath": ["pandas", "numpy"],
        "logicvista": ["pandas", "tqdm", "pydantic"],
    }
    modules = sorted({m for n in names for m in needs[n]})
    probe = "\n".join(
        [
            "import importlib",
            "missing = []",
            f"for m in {modules!r}:",
            "    try:",
            "        importlib.import_module(m)",
            "    except Exception as e:",
            "        missing.append(m + ' (' + type(e).__name__ + ': ' + str(e) + ')')",
            "import pandas",
            "if int(pandas.__version__.split('.')[0]) >= 3:",
            "    missing.append('pandas<3 (found ' + pandas.__version__ + ')')",
            "print('\\n'.join(missing))",
        ]
    )
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True)
    problems = done.stdout.strip() or (done.stderr.strip() if done.returncode else "")
    if problems:
        raise SystemExit(
            f"--official-python {python} cannot run the authors' code:\n{problems}\n"
            "make a separate venv: python3 -m venv V && V/bin/pip install 'pandas<3' numpy Levenshtein "
            "latex2sympy2 tqdm rich pydantic fire colorama; then pass --official-python V/bin/python"
        )


# ----------------------------------------------------------------------------------------------------------------
# Authors' side (runs under --official-python, with --authors-side NAME JOB)


def _load_module(name: str, path: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _stub(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def authors_mathvista(repo: Path, job: dict) -> dict:
    work = Path(job["work"])
    _stub("datasets", load_dataset=lambda *args, **kwargs: [])

    def read_json(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    def save_json(data, path):
        with open(path, "w") as f:
            json.dump(data, f, indent=4)

    _stub("utilities", read_json=read_json, save_json=save_json)
    module = _load_module("mathvista_calculate_score", repo / "evaluation" / "calculate_score.py")
    rows = read_rows("mathvista", Path(job["benchmark"]))
    output = {}
    for pid, row in rows:
        output[pid] = {
            "pid": pid,
            "choices": row["choices"],
            "question_type": row["question_type"],
            "answer_type": row["answer_type"],
            "precision": row["precision"],
            "answer": row["answer"],
            "metadata": row["metadata"],
            "extraction": job["extracted"].get(pid, ""),
        }
    save_json(output, work / "output.json")
    sys.argv = [
        "calculate_score.py",
        "--output_dir",
        str(work),
        "--output_file",
        "output.json",
        "--score_file",
        "scores.json",
    ]
    module.main()
    scores = read_json(work / "scores.json")
    judged = read_json(work / "output.json")
    per_item = {pid: bool(entry["true_false"]) for pid, entry in judged.items()}
    figures = {"accuracy": scores["average"]["accuracy"]}
    names = {
        "question_type": "per_question_type",
        "answer_type": "per_answer_type",
        "language": "per_language",
        "source": "per_source",
        "category": "per_category",
        "task": "per_task",
        "context": "per_context",
        "grade": "per_grade",
        "skills": "per_skill",
    }
    for key, ours_key in names.items():
        figures[ours_key] = {value: entry["accuracy"] for value, entry in scores.get(key, {}).items()}
    return {"figures": figures, "sizes": {"n": scores["average"]["total"]}, "per_item": per_item, "raw": scores}


def _mathvision_counts(result: dict) -> dict[str, tuple[int, int]]:
    counts = {}
    for key, text in result.items():
        match = re.match(r"(\d+)/(\d+)=", text)
        if match:
            counts[key] = (int(match.group(1)), int(match.group(2)))
    return counts


def authors_mathvision(repo: Path, job: dict) -> dict:
    work = Path(job["work"])
    (work / "data").mkdir(exist_ok=True)
    shutil.copyfile(job["benchmark"], work / "data" / "test.jsonl")
    os.chdir(work)  # evaluate.py reads ./data/test.jsonl at import
    sys.path.insert(0, str(repo / "evaluation"))
    if not _importable("fire"):
        _stub("fire")
    module = _load_module("mathvision_evaluate", repo / "evaluation" / "evaluate.py")
    rows = read_rows("mathvision", Path(job["benchmark"]))
    subjects = {}
    for _, row in rows:
        subjects.setdefault(row["subject"], None)
    out = {}
    for mode, field, regen in (("response", "response", True), ("model_answer", "model_answer", False)):
        path = work / f"answers_{mode}.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for item_id, _ in rows:
                line = {"id": item_id, field: job["extracted"].get(item_id, "")}
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
        with contextlib.redirect_stdout(io.StringIO()):
            module.evaluate(str(path), regen)
            module.math_level_subject_acc(str(path))
        counts = _mathvision_counts(json.loads(path.with_name(path.stem + "_result.json").read_text()))
        judged = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        figures = {
            "accuracy": counts["-all"][0] / counts["-all"][1],
            "per_subject": {s: counts[s][0] / counts[s][1] for s in subjects if s in counts},
            "per_level": {
                key[len("-level") :]: c / n for key, (c, n) in counts.items() if re.fullmatch(r"-level\d+", key)
            },
        }
        out[mode] = {
            "figures": figures,
            "sizes": {"n": counts["-all"][1]},
            "per_item": {str(j["id"]): bool(j["correct"]) for j in judged},
            "model_answer": {str(j["id"]): j.get("model_answer") for j in judged},
        }
    main = out["response"]
    main["figures"]["accuracy [their re-extraction skipped]"] = out["model_answer"]["figures"]["accuracy"]
    main["per_item_model_answer_mode"] = out["model_answer"]["per_item"]
    main["their_model_answer"] = main.pop("model_answer")
    return main


def authors_wemath(repo: Path, job: dict) -> dict:
    import pandas as pd

    work = Path(job["work"])
    four = _load_module("wemath_four_dimensional_metrics", repo / "evaluation" / "four_dimensional_metrics.py")
    accuracy = _load_module("wemath_accuracy", repo / "evaluation" / "accuracy.py")
    rows = read_rows("wemath", Path(job["benchmark"]))
    data = [dict(row, response=job["extracted"].get(item_id, "")) for item_id, row in rows]
    path = work / "wemath_responses.json"
    path.write_text(json.dumps(data, ensure_ascii=False))

    df = four.load_and_process_data(str(path))
    merged_2 = four.process_steps_data(df[df["key"].str.contains("2steps")], 2)
    merged_3 = four.process_steps_data(df[df["key"].str.contains("3steps")], 3)
    metrics = four.calculate_metrics(merged_2, merged_3)
    counts, rates = four.compute_final_scores(metrics, total_count=525)
    table = four.update_main_results_df(pd.DataFrame(), "bench", counts, rates).iloc[0].to_dict()

    total = 525
    ig, ik = counts["InadequateGeneralization"], counts["InsufficientKnowledge"]
    figures = {
        "score_strict": (total - 0.5 * ig - counts["RoteMemorization_strict"] - ik) / total,
        "score_loose": (total - 0.5 * ig - counts["RoteMemorization_loose"] - ik) / total,
        "IK": {"count": ik, "rate": ik / total},
        "IG": {"count": ig, "rate": ig / total},
    }
    for strictness in ("strict", "loose"):
        cm, rm = counts[f"CompleteMastery_{strictness}"], counts[f"RoteMemorization_{strictness}"]
        figures[f"CM_{strictness}"] = {"count": cm, "rate": cm / total}
        figures[f"RM_{strictness}"] = {"count": rm, "rate": rm / (cm + rm) if cm + rm else float("nan")}

    nodes = accuracy.load_knowledge_structure_nodes(str(repo / "data" / "knowledge_structure_nodes.json"))
    data_a = accuracy.load_and_process_data(str(path))
    steps_2 = accuracy.process_steps_data(data_a[data_a["key"].str.contains("2steps")], 2)
    steps_3 = accuracy.process_steps_data(data_a[data_a["key"].str.contains("3steps")], 3)
    one_step = pd.concat(
        [accuracy.evaluate_steps(steps_2, 2, nodes), accuracy.evaluate_steps(steps_3, 3, nodes)], axis=0
    )
    figures["one_step_accuracy"] = float(one_step["joker"].mean())
    figures["two_step_accuracy"] = float(steps_2["joker_multi"].mean())
    figures["three_step_accuracy"] = float(steps_3["joker_multi"].mean())
    step_table = accuracy.update_main_results_df(nodes, pd.DataFrame(), "bench", one_step, steps_2, steps_3)
    step_table = step_table.iloc[0].to_dict()

    # Their own printed strings must round from the exact figures above.
    checks = {
        "Score (Strict)": figures["score_strict"],
        "Score (Loose)": figures["score_loose"],
        "One-step(S1)": figures["one_step_accuracy"],
        "Two-step(S2)": figures["two_step_accuracy"],
        "Three-step(S3)": figures["three_step_accuracy"],
    }
    printed = {**table, **step_table}
    mismatches = [
        f"{k}: printed {printed[k]}, exact {v:.4%}" for k, v in checks.items() if printed.get(k) != f"{v:.2%}"
    ]
    per_item = {str(row["question number"]): bool(row["joker"]) for _, row in df.iterrows()}
    return {
        "figures": figures,
        "sizes": {"n_problems": total, "n_one_step_rows": int(len(one_step))},
        "per_item": per_item,
        "counts": counts,
        "rates": rates,
        "printed": {k: str(v) for k, v in printed.items()},
        "printed_mismatches": mismatches,
    }


def _letters_read(text: str) -> list[str]:
    letters = [t.upper() for t in re.findall(r"[A-Za-z0-9]+", text) if len(t) == 1]
    return letters or ["ZZZZZ"]


def _install_langchain_stand_ins() -> None:
    marker = "<<FORMAT INSTRUCTIONS>>"
    lead = 'Here is what I need you to extract from:\nThe answer is "'

    class FakeChat:
        def __init__(self, *args, **kwargs):
            pass

        def invoke(self, prompt):
            text = str(prompt)
            entry = text.split(lead, 1)[1].rsplit('"\n' + marker, 1)[0] if lead in text else text
            return types.SimpleNamespace(content=json.dumps({"choices": _letters_read(entry)}))

    class Template:
        def __init__(self, template):
            self.template = template

        @classmethod
        def from_template(cls, template):
            return cls(template)

        def format(self, **kwargs):
            return self.template.format(**kwargs)

    class Parser:
        def __init__(self, pydantic_object):
            self.model = pydantic_object

        def get_format_instructions(self):
            return marker

        def parse(self, text):
            return self.model.model_validate_json(text)

    class Unavailable:
        @classmethod
        def from_llm(cls, *args, **kwargs):
            raise RuntimeError("no LLM fixing/retrying in the agreement bench")

    _stub("langchain")
    _stub("langchain.llms", OpenAI=FakeChat)
    _stub("langchain.prompts", PromptTemplate=Template)
    _stub("langchain.chat_models", ChatOpenAI=FakeChat)
    _stub(
        "langchain.output_parsers",
        PydanticOutputParser=Parser,
        OutputFixingParser=Unavailable,
        RetryWithErrorOutputParser=Unavailable,
    )
    _stub("langchain_core")
    _stub("langchain_core.runnables", RunnablePassthrough=object)
    if not _importable("colorama"):
        plain = types.SimpleNamespace(RED="", WHITE="", GREEN="", RESET="")
        _stub("colorama", Fore=plain, Back=plain, Style=plain)


def authors_logicvista(repo: Path, job: dict) -> dict:
    import runpy

    import pandas as pd

    work = Path(job["work"])
    _install_langchain_stand_ins()
    dataset = json.loads(Path(job["benchmark"]).read_text(encoding="utf-8"))
    answers = {key: {"answer": job["extracted"].get(key, "")} for key in dataset}
    out = {}
    for field in ("broad_capability", "specific_capability"):
        run = work / field
        (run / "answers").mkdir(parents=True)
        (run / "results").mkdir()
        copy = {key: dict(row, capability=row.get(field, [])) for key, row in dataset.items()}
        (run / "dataset.json").write_text(json.dumps(copy, ensure_ascii=False))
        (run / "answers" / "bench-answers.json").write_text(json.dumps(answers, ensure_ascii=False))
        (run / "constants.py").write_text(
            'APIKEY = ""\nMODEL = "bench"\nANSWERS_PATH = "answers/" + MODEL + "-answers.json"\n'
            'RESULTS_PATH = "results/" + MODEL + "-accuracy-results.csv"\n'
            f"DATASET_PATH = {str(run) + '/'!r}\n"
        )
        os.chdir(run)
        sys.path.insert(0, str(run))
        sys.modules.pop("constants", None)
        with contextlib.redirect_stdout(io.StringIO()):
            runpy.run_path(str(repo / "eval" / "extract_accuracy.py"), run_name="__main__")

        source = (repo / "eval" / "analyze_accuracy.py").read_text(encoding="utf-8")
        values = sorted({v for row in dataset.values() for v in row.get(field, [])})
        match = re.search(r"^cat = (\[.*\])$", source, flags=re.M)
        categories = list(eval(match.group(1))) if match else []  # their literal list of names
        extended = categories + [v for v in values if v not in categories]
        source = source[: match.start()] + f"cat = {extended!r}" + source[match.end() :] if match else source
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(source, str(repo / "eval" / "analyze_accuracy.py"), "exec"), {"__name__": "__main__"})
        sys.path.remove(str(run))
        lines = {}
        for line in printed.getvalue().splitlines():
            found = re.match(r"^(.+?): (\S+)%\t\((\d+)/(\d+)\)$", line.strip())
            if found:
                lines[found.group(1)] = (int(found.group(3)), int(found.group(4)))
        out[field] = {"lines": lines, "categories": extended, "printed": printed.getvalue()}
        table = pd.read_csv(run / "results" / "bench-accuracy-results.csv")
        out[field]["per_item"] = {str(i): bool(m) for i, m in zip(table["id"], table["match?"], strict=True)}

    broad = out["broad_capability"]
    total = broad["lines"]["Total"]
    skills = {
        "inductive": "Inductive",
        "deductive": "Deductive",
        "numerical": "Numerical",
        "spatial": "Spatial",
        "mechanical": "Mechanical",
    }
    figures = {
        "accuracy": total[0] / total[1],
        "per_skill": {
            s: broad["lines"][label][0] / broad["lines"][label][1]
            for s, label in skills.items()
            if broad["lines"].get(label, (0, 0))[1]
        },
    }
    for field, key in (("broad_capability", "per_capability"), ("specific_capability", "per_specific_capability")):
        figures[key] = {}
        values = {v for row in dataset.values() for v in row.get(field, [])}
        for name in out[field]["categories"]:
            correct, n = out[field]["lines"].get(name, (0, 0))
            if n and name in values:
                figures[key][name] = correct / n
    return {
        "figures": figures,
        "sizes": {"n": total[1]},
        "per_item": broad["per_item"],
        "printed": {f: out[f]["printed"] for f in out},
    }


AUTHORS = {
    "mathvista": authors_mathvista,
    "mathvision": authors_mathvision,
    "wemath": authors_wemath,
    "logicvista": authors_logicvista,
}


def authors_side(name: str, job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    result = AUTHORS[name](Path(job["repo"]).resolve(), job)
    (Path(job["work"]) / "theirs.json").write_text(json.dumps(result, indent=1, ensure_ascii=False, default=str))


# ----------------------------------------------------------------------------------------------------------------
# Comparison


def flatten(figures: dict, prefix: str = "") -> dict[str, float]:
    """{"per_skill": {"x": {"accuracy": .5}}} → {"per_skill/x": .5}; {"IK": {"count": 3, "rate": .1}} kept as two."""
    out: dict[str, float] = {}
    for key, value in figures.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            out[name] = float(value)
        elif isinstance(value, dict):
            if "accuracy" in value and isinstance(value["accuracy"], (int, float)):
                out[name] = float(value["accuracy"])
            else:
                out.update(flatten(value, name + "/"))
    return out


def compare(name: str, ours: dict | None, theirs: dict) -> list[dict]:
    ours_flat = flatten(ours) if ours is not None else {}
    theirs_flat = flatten(theirs)
    keys = list(ours_flat) + [k for k in theirs_flat if k not in ours_flat]
    rows = []
    for key in keys:
        a, b = ours_flat.get(key), theirs_flat.get(key)
        diff = a - b if a is not None and b is not None and not (math.isnan(a) or math.isnan(b)) else None
        rows.append(
            {"benchmark": name, "figure": key, "ours": a, "theirs": b, "diff": diff, "target": key in TARGETS[name]}
        )
    return rows


def per_item_agreement(crafted: dict, predictions: dict | None, theirs: dict, gold: dict) -> dict:
    """Rows whose per-row verdicts differ, counted per crafted form, with up to 3 examples per form."""
    if predictions is None:
        return {}
    by_form: dict[str, dict] = {}
    for item_id, entry in crafted.items():
        ours = verdict(predictions.get(item_id, {}).get("official"))
        mine = theirs["per_item"].get(item_id)
        if ours is None or mine is None:
            continue
        form = by_form.setdefault(entry["form"], {"n": 0, "disagree": 0, "examples": []})
        form["n"] += 1
        if ours != mine:
            form["disagree"] += 1
            if len(form["examples"]) < 3:
                example = {
                    "id": item_id,
                    "extracted": predictions[item_id].get("extracted"),
                    "gold": gold.get(item_id),
                }
                form["examples"].append({**example, "ours": ours, "theirs": mine})
    return {
        "n_compared": sum(f["n"] for f in by_form.values()),
        "n_disagree": sum(f["disagree"] for f in by_form.values()),
        "by_form": dict(sorted(by_form.items())),
    }


def _is_count(figure: str) -> bool:
    return figure.endswith("count") or figure == "n" or figure.startswith("n_")


def _fmt(value: float | None, count: bool = False, sign: str = "") -> str:
    if value is None:
        return "—"
    if math.isnan(value):
        return "nan"
    return f"{value:{sign}.0f}" if count else f"{value:{sign}.4f}"


def write_report(out: Path, report: dict) -> None:
    (out / "official_agreement.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    lines = [
        "# Official figures: observe-r1 vs the benchmark authors' own code",
        "",
        "Same crafted responses per row of each full benchmark file; ours = `observe-r1 eval` "
        '`results.json["official"]["sample_0"]`, theirs = the authors\' evaluation code on our extracted '
        "answers (bench/official_agreement.py explains how each is run). Fractions 0..1; diff = ours − theirs. "
        "Target figures (must be 0) are marked *.",
        "",
    ]
    for name, entry in report["benchmarks"].items():
        lines += [
            f"## {name}",
            "",
            f"{entry['n_rows']} rows; forms: " + ", ".join(f"{k} {v}" for k, v in sorted(entry["forms"].items())),
            "",
        ]
        agreement = entry.get("per_item_agreement") or {}
        if agreement:
            lines += [f"Per-row verdicts: {agreement['n_disagree']} of {agreement['n_compared']} disagree.", ""]
            if agreement["n_disagree"]:
                lines += [
                    "| form | rows | disagree | e.g. (id: extracted / gold → ours, theirs) |",
                    "|---|---|---|---|",
                ]
                for form, c in agreement["by_form"].items():
                    if c["disagree"]:
                        shown = "; ".join(
                            f"{e['id']}: `{e['extracted']}` / `{e['gold']}` → {e['ours']}, {e['theirs']}"
                            for e in c["examples"][:2]
                        )
                        lines.append(f"| {form} | {c['n']} | {c['disagree']} | {shown.replace('|', '∣')} |")
                lines.append("")
        for note in entry.get("notes", []):
            lines.append(f"- {note}")
        if entry.get("notes"):
            lines.append("")
        lines += ["| benchmark | figure | ours | theirs | diff |", "|---|---|---|---|---|"]
        for row in entry["figures"]:
            star = "*" if row["target"] else ""
            count = _is_count(row["figure"])
            ours, theirs, diff = _fmt(row["ours"], count), _fmt(row["theirs"], count), _fmt(row["diff"], count, "+")
            lines.append(f"| {name} | {row['figure']}{star} | {ours} | {theirs} | {diff} |")
        lines.append("")
    failing = report.get("failing_targets", [])
    lines += [
        "## Targets",
        "",
        "all target figures agree" if not failing else "targets that differ: " + ", ".join(failing),
        "",
    ]
    (out / "official_agreement.md").write_text("\n".join(lines))


# ----------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repos", type=Path, help="folder with MathVista/, MATH-V/, We-Math/, LogicVista/")
    parser.add_argument(
        "--benchmarks", type=Path, default=None, help="<name>/full/ files (default: the repositories')"
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results" / "official_agreement")
    parser.add_argument(
        "--official-python",
        default=os.environ.get("OFFICIAL_PYTHON", sys.executable),
        help="interpreter that runs the authors' code (see the requirements above)",
    )
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", help="run each seed into OUT/seed-N and write OUT/seeds.md")
    parser.add_argument(
        "--theirs-only",
        action="store_true",
        help="skip observe-r1; feed the crafted answers to the authors' code as the extracted ones",
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="craft only the gold, wrong and empty answers (every scorer reads them alike): isolates aggregation",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target figure differs")
    parser.add_argument("--authors-side", nargs=2, metavar=("BENCH", "JOB"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.authors_side:
        authors_side(*args.authors_side)
        return 0
    if args.repos is None:
        parser.error("--repos is required")
    if args.seeds:
        return run_seeds(args)
    check_official_python(args.official_python, args.only)
    global PLAIN
    PLAIN = args.plain
    args.out = args.out.resolve()  # the authors' side runs in its own work folder
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"seed": args.seed, "theirs_only": args.theirs_only, "plain": args.plain, "benchmarks": {}}
    failing = []
    for name in args.only:
        spec = BENCHMARKS[name]
        benchmark = (
            args.benchmarks / spec["file"] if args.benchmarks else args.repos / spec["repo"] / spec["in_repo"]
        ).resolve()
        repo = (args.repos / spec["repo"]).resolve()
        if not benchmark.exists() or not repo.exists():
            raise SystemExit(f"{name}: missing {benchmark if not benchmark.exists() else repo}")
        print(f"{name}: {benchmark}", flush=True)
        rows = read_rows(name, benchmark)
        crafted = craft(name, rows, args.seed)
        bench_out = args.out / name
        bench_out.mkdir(parents=True, exist_ok=True)
        responses = bench_out / "responses.jsonl"
        responses.write_text(
            "".join(
                json.dumps({"id": i, "response": c["response"]}, ensure_ascii=False) + "\n" for i, c in crafted.items()
            )
        )
        (bench_out / "forms.json").write_text(json.dumps({i: c["form"] for i, c in crafted.items()}, indent=0))
        notes = []
        if args.theirs_only:
            ours, predictions = None, None
            extracted = {i: c["answer"].strip() for i, c in crafted.items()}
        else:
            ours, predictions = run_ours(benchmark, responses, bench_out / "ours")
            extracted = {i: (predictions.get(i, {}).get("extracted") or "") for i in crafted}
            missing = [i for i in crafted if i not in predictions]
            if missing:
                notes.append(f"{len(missing)} ids without a prediction row (fed as empty answers): {missing[:10]}")
        theirs = run_theirs(name, repo, benchmark, extracted, bench_out / "theirs", args.official_python)
        if theirs.get("printed_mismatches"):
            notes.append(
                "their printed strings disagree with the exact figures: " + "; ".join(theirs["printed_mismatches"])
            )
        notes.append("their denominators: " + ", ".join(f"{k} {v}" for k, v in theirs.get("sizes", {}).items()))
        gold = {i: row.get("answer") for i, row in rows}
        figures = compare(name, ours, theirs["figures"])
        agreement = per_item_agreement(crafted, predictions, theirs, gold)
        if name == "mathvision" and predictions is not None:
            alt = per_item_agreement(crafted, predictions, {"per_item": theirs["per_item_model_answer_mode"]}, gold)
            notes.append(
                f"with our answer as their final answer (no re-extraction): {alt['n_disagree']} of "
                f"{alt['n_compared']} per-row verdicts disagree"
            )
        forms: dict[str, int] = {}
        for c in crafted.values():
            forms[c["form"]] = forms.get(c["form"], 0) + 1
        report["benchmarks"][name] = {
            "n_rows": len(rows),
            "forms": forms,
            "figures": figures,
            "per_item_agreement": agreement,
            "notes": notes,
            "theirs_per_item_correct": sum(theirs["per_item"].values()),
        }
        for row in figures:
            if row["target"] and (row["diff"] is None or abs(row["diff"]) > EPS) and ours is not None:
                failing.append(f"{name}:{row['figure']}")
    report["failing_targets"] = failing
    write_report(args.out, report)
    print(f"wrote {args.out / 'official_agreement.md'}", flush=True)
    print((args.out / "official_agreement.md").read_text())
    return 1 if args.check and failing else 0


def run_seeds(args) -> int:
    """One run per seed (``OUT/seed-N``, ``OUT/plain-seed-N`` with ``--plain``), then ``OUT/seeds.json`` and
    ``OUT/seeds.md``: per seed and benchmark, the rows whose verdicts differ and the largest target difference."""
    base = ["--repos", str(args.repos), "--official-python", args.official_python, "--only", *args.only]
    base += ["--benchmarks", str(args.benchmarks)] if args.benchmarks else []
    base += [flag for flag, on in (("--plain", args.plain), ("--theirs-only", args.theirs_only)) if on]
    summary, code = {}, 0
    for seed in args.seeds:
        out = args.out / f"{'plain-' if args.plain else ''}seed-{seed}"
        code |= main([*base, "--seed", str(seed), "--out", str(out)])
        report = json.loads((out / "official_agreement.json").read_text())
        summary[seed] = {
            name: {"rows": entry["n_rows"], "differ": (entry.get("per_item_agreement") or {}).get("n_disagree"),
                   "largest_target_diff": max((abs(r["diff"]) for r in entry["figures"]
                                               if r["target"] and r["diff"] is not None), default=None)}
            for name, entry in report["benchmarks"].items()
        }  # fmt: skip
        summary[seed]["failing_targets"] = report["failing_targets"]
    args.out.mkdir(parents=True, exist_ok=True)
    name = "plain-seeds" if args.plain else "seeds"
    (args.out / f"{name}.json").write_text(json.dumps(summary, indent=2))
    benchmarks = list(args.only)
    lines = ["| seed | " + " | ".join(f"{b} rows differ / largest diff" for b in benchmarks) + " |",
             "|---|" + "---|" * len(benchmarks)]  # fmt: skip
    for seed, entry in summary.items():
        cells = [f"{entry[b]['differ']} / {entry[b]['largest_target_diff'] or 0:.4f}" for b in benchmarks]
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    (args.out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return code


if __name__ == "__main__":
    sys.exit(main())
