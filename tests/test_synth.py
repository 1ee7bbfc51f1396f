import random

import pytest

from observe_r1.synth import (
    CELL,
    COLORS,
    FAMILIES,
    IMAGE_SIZE,
    Shape,
    count,
    describe,
    generate_items,
    make_question,
    render,
    sample_scene,
)


def _recount_from_pixels(image, color):
    """Count shapes of a colour by looking at each grid cell's centre pixel."""
    rgb = COLORS[color]
    hits = 0
    for cell in range(9):
        x, y = (cell % 3) * CELL + CELL // 2, (cell // 3) * CELL + CELL // 2 + 2
        hits += image.getpixel((x, y)) == rgb
    return hits


@pytest.mark.parametrize("seed", range(5))
def test_rendered_scene_matches_the_scene_and_description(seed):
    rng = random.Random(seed)
    for _ in range(20):
        scene = sample_scene(rng)
        image = render(scene)
        assert image.size == (IMAGE_SIZE, IMAGE_SIZE)
        for color in COLORS:
            assert _recount_from_pixels(image, color) == count(scene, color)
        # the description lists every shape, in reading order
        parts = describe(scene).split(", ")
        assert parts == [f"{s.color} {s.kind}" for s in sorted(scene, key=lambda s: s.cell)]


def test_answers_recomputed_from_the_description():
    for item in generate_items(100, seed=4):
        shapes = [tuple(p.split(" ")) for p in item["observation"].split(", ")]

        def n(c=None, k=None, shapes=shapes):
            return sum((c is None or sc == c) and (k is None or sk == k) for sc, sk in shapes)

        words = item["problem"].rstrip("?").split(" ")
        fam = item["family"]
        if fam == "count_all":
            expected = len(shapes)
        elif fam == "count_color":
            expected = n(words[2])
        elif fam == "count_color_kind":
            expected = n(words[2], words[3].rstrip("s"))
        elif fam == "compare":
            expected = n(words[3]) - n(words[6])
        else:
            expected = n(k=words[2].rstrip("s")) + n(k=words[4].rstrip("s"))
        assert int(item["answer"]) == expected, item


def test_deterministic_per_seed_and_disjoint_across_seeds():
    a, b, c = generate_items(30, 1), generate_items(30, 1), generate_items(30, 2)
    assert [x["problem"] + x["observation"] for x in a] == [x["problem"] + x["observation"] for x in b]
    assert a[0]["image"].tobytes() == b[0]["image"].tobytes()
    assert [x["observation"] for x in a] != [x["observation"] for x in c]
    assert {x["family"] for x in a} == set(FAMILIES)


def test_unknown_family_is_an_error():
    with pytest.raises(ValueError, match="unknown question family"):
        make_question([Shape("red", "square", 0)], "nope", random.Random(0))
