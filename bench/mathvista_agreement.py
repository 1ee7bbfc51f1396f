"""Agreement of observe-r1's verdicts with MathVista's published answer normalisation, on crafted answers.

    .venv/bin/python bench/mathvista_agreement.py --benchmark MathVista/data/testmini.json \
        [--out bench/results/mathvista_agreement.json]

``--benchmark`` is MathVista's ``data/testmini.json`` as its GitHub repository publishes it (1,000 problems; no
image is opened). For every problem we craft answers a model gives — the option letter, ``(B)``, the option text,
its lower-case form, a wrong letter, a wrong option's text, ``(B) text`` for multiple choice; the gold, ``7.0``,
padded spaces and a wrong integer for integers; extra decimals that round to the gold, the gold, a wrong float;
the gold or a wrong list — and score each one twice: with observe-r1's accuracy reward (the item's options and
precision carried as in training) and with a restatement of MathVista's normalisation (a letter or ``(x)`` picks
that option, any other text the option closest by edit distance; integers ``str(int(float(x)))``; floats
rounded to ``precision``; then string equality with the gold).

Two further families are reported apart because the rules differ on purpose: free text on a multiple-choice
problem (MathVista snaps it to the nearest option; observe-r1 gives no credit unless it *is* an option's text)
and a non-integer for an integer gold (MathVista truncates ``7.5`` to ``7``).
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter, defaultdict
from pathlib import Path

from observe_r1.data import load_items, read_rows
from observe_r1.official import mathvista_correct
from observe_r1.rewards import score_completions

LETTERS = "ABCDEFGHIJ"


def mathvista_verdict(extraction: str, row: dict) -> bool:
    """MathVista's published rule (``observe_r1.official.mathvista_correct``) on a raw testmini row."""
    choices = [str(c) for c in row.get("choices") or []]
    multi = row["question_type"] == "multi_choice"
    item = {"answer": LETTERS[choices.index(row["answer"])] if multi else row["answer"], "choices": choices,
            "precision": row.get("precision"),
            "meta": {"question_type": row["question_type"], "answer_type": row["answer_type"]}}  # fmt: skip
    return mathvista_correct(extraction, item)


def crafted(row: dict, rng: random.Random) -> list[tuple[str, str]]:
    """(family, answer) pairs for one MathVista problem."""
    answer = row["answer"]
    if row["question_type"] == "multi_choice":
        choices = row["choices"]
        right = choices.index(answer)
        wrong = rng.choice([i for i in range(len(choices)) if i != right])
        out = [("letter", LETTERS[right]), ("(letter)", f"({LETTERS[right]})"), ("option text", answer),
               ("option text, lower case", answer.lower()), ("wrong letter", LETTERS[wrong]),
               ("wrong option text", choices[wrong]), ("(letter) text", f"({LETTERS[right]}) {answer}")]  # fmt: skip
        if choices[wrong].lower() == answer.lower():
            out = [pair for pair in out if pair[0] != "option text, lower case"]
        return out
    if row["answer_type"] == "integer":
        value = int(answer)
        return [("integer", answer), ("integer as 7.0", f"{value}.0"), ("integer, spaces", f" {answer} "),
                ("wrong integer", str(value + rng.choice([-2, -1, 1, 3])))]  # fmt: skip
    if row["answer_type"] == "float":
        precision = int(row["precision"])
        extra = f"{float(answer):.{precision}f}" + str(rng.choice([1, 2, 3]))  # more decimals, same rounding
        step = 10**-precision
        return [("float", answer), ("float, extra decimals", extra),
                ("wrong float", f"{float(answer) + step * rng.choice([-3, 1, 2]):.{precision}f}")]  # fmt: skip
    return [("list", answer), ("wrong list", answer.replace("]", ", 0]"))]


def deliberate(row: dict, rng: random.Random) -> list[tuple[str, str]]:
    """Answers on which the two rules differ by design."""
    if row["question_type"] == "multi_choice":
        return [("free text on multiple choice", rng.choice(["I am not sure", "none of these", "the second one"]))]
    if row["answer_type"] == "integer":
        return [("non-integer for an integer gold", f"{int(row['answer'])}.5")]
    return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", required=True, help="MathVista data/testmini.json")
    parser.add_argument("--out", default="bench/results/mathvista_agreement.json")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    raw = {str(r.get("pid", r["_key"])): r for r in read_rows(args.benchmark)}
    items, _ = load_items(args.benchmark, images="ignore", unscoreable="keep")
    results = {}
    for name, craft in (("crafted", crafted), ("deliberate differences", deliberate)):
        cases = [(item, family, answer) for item in items for family, answer in craft(raw[item["id"]], rng)]
        ours = score_completions([f"<answer>{a}</answer>" for _, _, a in cases], [it["answer"] for it, _, _ in cases],
                                 choices=[it["choices"] for it, _, _ in cases],
                                 precisions=[it["precision"] for it, _, _ in cases])  # fmt: skip
        by_family = defaultdict(Counter)
        examples = []
        for (item, family, answer), score in zip(cases, ours, strict=True):
            theirs = mathvista_verdict(answer, raw[item["id"]])
            agree = bool(score) == theirs
            by_family[family]["n"] += 1
            by_family[family]["agree"] += agree
            by_family[family]["ours_right"] += bool(score)
            by_family[family]["theirs_right"] += theirs
            if not agree and len(examples) < 20:
                source = raw[item["id"]]
                examples.append({"id": item["id"], "family": family, "answer": answer, "gold": source["answer"],
                                 "choices": source.get("choices"), "ours": bool(score),
                                 "mathvista": theirs})  # fmt: skip
        n = sum(c["n"] for c in by_family.values())
        agree = sum(c["agree"] for c in by_family.values())
        results[name] = {"n": n, "agreement": agree / n if n else None,
                         "by_family": {f: dict(c) for f, c in sorted(by_family.items())},
                         "disagreements": examples}  # fmt: skip
        print(f"{name}: {n} answers, agreement {agree / n:.4f}")
        for family, c in sorted(by_family.items()):
            print(f"  {family:34s} n={c['n']:4d}  agree={c['agree'] / c['n']:.3f}  ours right={c['ours_right']:4d}"
                  f"  mathvista right={c['theirs_right']:4d}")  # fmt: skip
    results["benchmark"] = {"file": Path(args.benchmark).name, "problems": len(items)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
