"""The built-in visual-reasoning task: Pillow scenes of coloured shapes and counting questions of graded difficulty.

Each scene puts 1-5 shapes (square, circle, triangle; red, green, blue, yellow) on a 3x3 grid of an 84x84 image
(9 image tokens for Qwen2.5-VL). Question families, easy to hard:

    count_all         How many shapes are there?
    count_color       How many red shapes are there?
    count_color_kind  How many red circles are there?
    compare           How many more red shapes than blue shapes are there?
    sum_kinds         How many circles and squares are there in total?

Answers are exact integers; the description a perfect observer writes in ``<observe>`` is derived from the scene.
``observe-r1 synth --n 200 --seed 0 --out data/synth`` writes canonical JSONL + PNGs. Deterministic per seed;
use disjoint seeds for a held-out split.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 200, 30)}
KINDS = ["square", "circle", "triangle"]
FAMILIES = ["count_all", "count_color", "count_color_kind", "compare", "sum_kinds"]
IMAGE_SIZE = 84
CELL = IMAGE_SIZE // 3


@dataclass(frozen=True)
class Shape:
    """One coloured shape in a grid cell of a synthetic scene."""

    color: str
    kind: str
    cell: int  # 0..8, row-major on the 3x3 grid


def plural(kind: str, n: int = 2) -> str:
    """``kind`` in the plural when ``n != 1``."""
    return kind if n == 1 else kind + "s"


def sample_scene(rng: random.Random, max_shapes: int = 5) -> list[Shape]:
    """A random scene of shapes on the grid."""
    cells = sorted(rng.sample(range(9), rng.randint(1, max_shapes)))
    return [Shape(rng.choice(list(COLORS)), rng.choice(KINDS), cell) for cell in cells]


def render(scene: list[Shape]) -> Image.Image:
    """The scene as a Pillow image."""
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for shape in scene:
        x0, y0 = (shape.cell % 3) * CELL + 4, (shape.cell // 3) * CELL + 4
        x1, y1 = x0 + CELL - 8, y0 + CELL - 8
        fill = COLORS[shape.color]
        if shape.kind == "square":
            draw.rectangle([x0, y0, x1, y1], fill=fill)
        elif shape.kind == "circle":
            draw.ellipse([x0, y0, x1, y1], fill=fill)
        else:
            draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)
    return image


def describe(scene: list[Shape]) -> str:
    """What a perfect observer writes: the shapes in reading order."""
    return ", ".join(f"{s.color} {s.kind}" for s in scene)


def count(scene: list[Shape], color: str | None = None, kind: str | None = None) -> int:
    """How many shapes of the scene match the given colour and/or kind."""
    return sum((color is None or s.color == color) and (kind is None or s.kind == kind) for s in scene)


def make_question(scene: list[Shape], family: str, rng: random.Random) -> tuple[str, str, int]:
    """Return ``(question, reasoning, answer)`` for one family; the reasoning is the templated perfect solution."""
    present = sorted({s.color for s in scene})
    color = rng.choice(present) if rng.random() < 0.8 else rng.choice(list(COLORS))
    kind = rng.choice(KINDS)
    if family == "count_all":
        n = len(scene)
        return "How many shapes are there?", f"I count the shapes: {n}.", n
    if family == "count_color":
        n = count(scene, color)
        return f"How many {color} shapes are there?", f"{color} shapes: {n}.", n
    if family == "count_color_kind":
        n = count(scene, color, kind)
        return f"How many {color} {plural(kind)} are there?", f"{color} {plural(kind)}: {n}.", n
    if family == "compare":
        a, b = rng.sample(list(COLORS), 2)
        na, nb = count(scene, a), count(scene, b)
        if na < nb:
            a, b, na, nb = b, a, nb, na
        reasoning = f"{a} shapes: {na}. {b} shapes: {nb}. {na} - {nb} = {na - nb}."
        return f"How many more {a} shapes than {b} shapes are there?", reasoning, na - nb
    if family == "sum_kinds":
        k1, k2 = rng.sample(KINDS, 2)
        n1, n2 = count(scene, kind=k1), count(scene, kind=k2)
        reasoning = f"{plural(k1)}: {n1}. {plural(k2)}: {n2}. {n1} + {n2} = {n1 + n2}."
        return f"How many {plural(k1)} and {plural(k2)} are there in total?", reasoning, n1 + n2
    raise ValueError(f"unknown question family {family!r}; choose from {FAMILIES}")


def format_response(observation: str, reasoning: str, answer: int | str) -> str:
    """An observe/think/answer response for a scene, its reasoning and a final answer."""
    return f"<observe>{observation}</observe> <think>{reasoning}</think> <answer>{answer}</answer>"


def generate_items(n: int, seed: int, families: list[str] | None = None) -> list[dict]:
    """``n`` items as dicts with the scene, its PIL image and the perfect response; families cycle in order."""
    rng = random.Random(seed)
    families = families or FAMILIES
    items = []
    for i in range(n):
        scene = sample_scene(rng)
        family = families[i % len(families)]
        question, reasoning, answer = make_question(scene, family, rng)
        items.append(
            {
                "id": f"synth-{seed}-{i}",
                "family": family,
                "level": FAMILIES.index(family),
                "problem": question,
                "answer": str(answer),
                "scene": [s.__dict__ for s in scene],
                "observation": describe(scene),
                "reasoning": reasoning,
                "image": render(scene),
            }
        )
    return items


def write_dataset(items: list[dict], out_dir: str | Path, name: str = "data.jsonl") -> Path:
    """Canonical JSONL (``id, problem, answer, images, family, ...``) with images as PNG paths relative to it."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    path = out / name
    with path.open("w") as f:
        for item in items:
            rel = f"images/{item['id']}.png"
            item["image"].save(out / rel)
            row = {k: v for k, v in item.items() if k != "image"}
            f.write(json.dumps({**row, "images": [rel], "source": "synth"}) + "\n")
    return path


def corpus_sentences(n: int = 300) -> list[str]:
    """Task text for training the tiny tokenizer (no images rendered)."""
    rng = random.Random(12345)
    out = []
    for i in range(n):
        scene = sample_scene(rng)
        question, reasoning, answer = make_question(scene, FAMILIES[i % len(FAMILIES)], rng)
        out.append(question + " " + format_response(describe(scene), reasoning, answer))
    return out
