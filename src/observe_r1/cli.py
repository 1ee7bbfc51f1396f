"""The ``observe-r1`` command line. Every command is a thin wrapper: the logic lives in the modules it calls."""

from __future__ import annotations

from pathlib import Path

import typer

from observe_r1.generation import BATCH_SIZE, MAX_NEW_TOKENS

# Plain help text at up to 120 columns: rich boxes wrapped every option into unreadable columns on 80-wide terminals.
HELP_SETTINGS = {"max_content_width": 120, "help_option_names": ["-h", "--help"]}

app = typer.Typer(
    help="Observe-R1: progressive RL for multimodal reasoning, on TRL.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    context_settings=HELP_SETTINGS,
)


@app.command("tiny-model")
def tiny_model(
    out: Path = typer.Option(..., help="Directory to write the model, processor and generation config to."),
    size: str = typer.Option(
        "tiny",
        help="tiny (~0.2M params), small (~0.6M), base (~1.8M), or the published architecture of "
        "qwen2.5-vl-3b / qwen2.5-vl-7b / qwen3-vl-2b / qwen3-vl-4b / qwen3-vl-8b (random weights; use --layers "
        "for a CPU).",
    ),
    family: str = typer.Option(
        None, help="Model family of tiny / small / base: qwen2.5-vl (default) or qwen3-vl. A shape names its own."
    ),
    layers: int = typer.Option(None, help="Shape-true sizes only: keep this many language-model layers."),
    vision_layers: int = typer.Option(None, help="Shape-true sizes only: keep this many vision blocks."),
    seed: int = typer.Option(0, help="Weights are identical for the same seed."),
) -> None:
    """Build a randomly initialised vision-language model locally (no download); loads with the HF auto classes."""
    from observe_r1.models import (
        SHAPES,
        build_tiny_model,
        count_parameters,
        load_policy,
        num_parameters,
        resolve_size,
        shaped_config,
    )

    try:
        chosen = resolve_size(size, family)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    if size in SHAPES:  # counted on the meta device: nothing allocated
        typer.echo(f"{size} at full depth: {count_parameters(shaped_config(size)):,} parameters")
    path = build_tiny_model(out, size=size, family=family, seed=seed, layers=layers, vision_layers=vision_layers)
    model, _ = load_policy(path)
    typer.echo(f"wrote {size} {chosen.name} ({num_parameters(model):,} parameters) to {path}")


@app.command()
def synth(
    out: Path = typer.Option(..., help="Output directory (data.jsonl + images/)."),
    n: int = typer.Option(200, help="Number of items."),
    seed: int = typer.Option(0, help="Random seed; use disjoint seeds for held-out splits."),
) -> None:
    """Write the built-in synthetic visual-reasoning task as canonical JSONL + PNG images."""
    from observe_r1.synth import generate_items, write_dataset

    path = write_dataset(generate_items(n, seed), out)
    typer.echo(f"wrote {n} items to {path}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, add_help_option=False)
def train(ctx: typer.Context) -> None:
    """Observe-R1 RL with TRL: --config RECIPE.yaml, then any ObserveR1Config / GRPOConfig / TrainingArguments
    field as an override. TRL's own flags pass through unchanged; they are spelled with underscores
    (--max_steps) and observe-r1's dashes work too (--max-steps, --skip-bad-rows, --out for --output_dir).

    Example: observe-r1 train --config recipes/tiny_cpu.yaml --max-steps 20 --out runs/r1
    """
    from observe_r1.train import parse_train_args, run_training, train_help

    if {"-h", "--help"} & set(ctx.args):
        typer.echo((ctx.command.help or "").strip() + "\n\n" + train_help())
        return
    script_args, config = parse_train_args(list(ctx.args))
    run_training(script_args, config)


# --backend openai: one set of options for eval and ladder build (observe_r1.serving)
URL = typer.Option(None, help="--backend openai: the server's OpenAI-compatible endpoint (http://HOST:PORT/v1).")
SERVED_MODEL = typer.Option(None, help="--backend openai: the model name the server knows (default: --model, which "
                            "then only supplies the processor: image budget, token ids).")  # fmt: skip
API_KEY_ENV = typer.Option("OBSERVE_R1_API_KEY", help="--backend openai: variable holding the API key (then "
                           "OPENAI_API_KEY; a local server needs none). Never written to disk.")  # fmt: skip
CONCURRENCY = typer.Option(8, help="--backend openai: requests in flight at once.")
SKIP_TEXT_CHECK = typer.Option(False, help="--backend openai: run even if the probe cannot force a known text through "
                               "the server to check that responses come back verbatim.")  # fmt: skip


def _server(backend: str, url: str | None, served_model, api_key_env: str, concurrency: int, skip_text_check: bool,
            out: Path):  # fmt: skip
    """The :class:`observe_r1.serving.ServerOptions` of ``--backend openai`` (None for other backends)."""
    if backend != "openai":
        if url is not None:
            raise typer.BadParameter("--url is for --backend openai")
        return None
    if url is None:
        raise typer.BadParameter("--backend openai needs --url (e.g. http://127.0.0.1:8000/v1)")
    from observe_r1.serving import ServerOptions

    return ServerOptions(url, served_model, key_env=api_key_env, concurrency=concurrency,
                         check_text=not skip_text_check, cache_dir=out)  # fmt: skip


@app.command("eval")
def eval_cmd(
    benchmark: Path = typer.Option(..., help="Benchmark as published: JSON/JSONL/Parquet file or datasets directory."),
    out: Path = typer.Option(..., help="Output directory: results.json, predictions.jsonl, summary.md."),
    model: str = typer.Option(
        None, help="Model directory, LoRA adapter folder (loaded on its base model) or hub id; not with --responses."
    ),
    responses: Path = typer.Option(
        None, help="Score saved responses instead of generating: JSONL lines {id, response}, several per id allowed."
    ),
    samples: int = typer.Option(1, help="Responses per item."),
    temperature: float = typer.Option(0.0, help="0 = greedy."),
    prompt: str = typer.Option("observe", help="observe (observe/think/answer system prompt) or plain."),
    layout: str = typer.Option(None, help="Force a layout: canonical, mathvista, mathverse, mathvision, ..."),
    image_root: Path = typer.Option(None, help="Folder to look for relative image paths in first."),
    limit: int = typer.Option(None, help="Evaluate only the first N items."),
    backend: str = typer.Option("hf", help="hf, vllm, or openai (a running server: --url, --served-model)."),
    url: str = URL,
    served_model: str = SERVED_MODEL,
    api_key_env: str = API_KEY_ENV,
    concurrency: int = CONCURRENCY,
    skip_text_check: bool = SKIP_TEXT_CHECK,
    batch_size: int = typer.Option(BATCH_SIZE, help="Sequences per generate call (images are decoded per batch)."),
    max_new_tokens: int = typer.Option(MAX_NEW_TOKENS, help="Longest response, in tokens."),
    cache_implementation: str = typer.Option(
        "auto", help="hf backend KV cache: static (preallocated), dynamic, or auto (static on CUDA, dynamic on CPU)."
    ),
    compile_generation: str = typer.Option(
        "auto", help="hf backend: compile the decoding step (true/false; auto: with the static cache on CUDA)."
    ),
    skip_bad_rows: bool = typer.Option(False, help="Skip and count unusable rows (e.g. a missing image)."),
    strict: bool = typer.Option(
        False, help="Stop at a gold answer no rule can score, instead of scoring it as the authors do and counting it."
    ),
    judge_url: str = typer.Option(
        None,
        help="OpenAI-compatible endpoint (e.g. http://127.0.0.1:8000/v1) of an LLM that reads the answers the rules "
        "cannot, as MathVista, MathVerse and LogicVista's authors do; answers cached in OUT/judge_cache.jsonl.",
    ),
    judge_model: str = typer.Option(None, help="Model name the judge server serves (needed with --judge-url)."),
    judge_api_key_env: str = typer.Option(
        "OPENAI_API_KEY", help="Environment variable holding the judge's API key (a local server needs none)."
    ),
    judge_concurrency: int = typer.Option(8, help="Judge requests in flight at once."),
    judge_timeout: float = typer.Option(60.0, help="Seconds before one judge request is abandoned and retried."),
    judge_retries: int = typer.Option(
        3, help="Retries of a failed judge request (backoff 1, 2, 4 s …); then that row keeps the rule reading."
    ),
    judge_rows: str = typer.Option(
        "all",
        help="all: the judge reads every response, as the authors' scorers do; unreadable: only those the rules "
        "cannot read (fewer requests).",
    ),
    judge_prompts: str = typer.Option(
        "observe-r1", help="observe-r1 (our prompts) or official: the authors' prompts, read from --benchmark-repo."
    ),
    benchmark_repo: Path = typer.Option(
        None,
        help="With --judge-prompts official: a checkout of the benchmark's repository (MathVista, MathVerse); "
        "its prompt files are parsed, never run.",
    ),
) -> None:
    """Evaluate a model, or score saved responses: the benchmark's official figures, accuracy, format compliance
    and response lengths (resumable). With --judge-url, an LLM judge reads the answers as the benchmark's authors
    have one read them (--judge-rows, --judge-prompts)."""
    import os

    from observe_r1.eval import eval_line, evaluate, score_responses

    judge = None
    if (judge_url is None) != (judge_model is None):
        raise typer.BadParameter("give --judge-url and --judge-model together")
    if judge_url is None and (judge_prompts != "observe-r1" or benchmark_repo is not None):
        raise typer.BadParameter("--judge-prompts and --benchmark-repo need a judge (--judge-url, --judge-model)")
    if judge_url is not None:
        from observe_r1.judge import Judge

        judge = Judge(judge_url, judge_model, api_key=os.environ.get(judge_api_key_env), key_env=judge_api_key_env,
                      concurrency=judge_concurrency, timeout=judge_timeout, retries=judge_retries, rows=judge_rows,
                      prompts=judge_prompts, benchmark_repo=benchmark_repo)  # fmt: skip
    if responses is not None:
        results = score_responses(benchmark, responses, out, layout=layout, limit=limit, skip_bad_rows=skip_bad_rows,
                                  strict=strict, judge=judge)  # fmt: skip
    else:
        if model is None:
            raise typer.BadParameter("give --model to generate, or --responses to score saved responses")
        from observe_r1.generation import make_generator

        server = _server(backend, url, served_model, api_key_env, concurrency, skip_text_check, out)
        generator = make_generator(model, backend=backend, batch_size=batch_size, max_new_tokens=max_new_tokens,
                                   cache_implementation=cache_implementation,
                                   compile_generation=_tri_state(compile_generation), server=server)  # fmt: skip
        results = evaluate(generator, benchmark, out, samples=samples, temperature=temperature, prompt=prompt,
                           limit=limit, layout=layout, batch_size=batch_size, image_root=image_root,
                           skip_bad_rows=skip_bad_rows, strict=strict, judge=judge)  # fmt: skip
    typer.echo(eval_line(results, out))


def _tri_state(value: str) -> bool | None:
    """``true`` / ``false`` / ``auto`` (None) from the command line."""
    choices = {"true": True, "false": False, "auto": None}
    if value.lower() not in choices:
        raise typer.BadParameter(f"expected true, false or auto; got {value!r}")
    return choices[value.lower()]


@app.command()
def merge(
    adapter: Path = typer.Argument(..., help="A LoRA adapter folder: final/ or a checkpoint-* of a --use_peft run."),
    out: Path = typer.Option(..., help="Directory to write the merged model and its processor to."),
) -> None:
    """Merge a LoRA adapter into its base model (named in adapter_config.json) and save a whole model."""
    from observe_r1.lora import adapter_base, merge_adapter

    path = merge_adapter(adapter, out)
    typer.echo(f"merged {adapter} into {adapter_base(adapter)} -> {path}")


@app.command()
def compare(
    runs: list[Path] = typer.Argument(..., help="Eval output directories."),
    out: Path = typer.Option(Path("evals/compare"), help="Where to write compare.md and compare.png."),
) -> None:
    """Side-by-side table and bar chart of several evaluations."""
    from observe_r1.eval import compare as compare_runs

    path = compare_runs(runs, out)
    typer.echo((path / "compare.md").read_text())


@app.command()
def demo(
    out: Path = typer.Option(Path("demo"), help="Output directory (replaced): report.md, summary.json, plots/."),
    quick: bool = typer.Option(False, help="Smaller scale, under 2 minutes."),
    seed: int = typer.Option(0, help="Seed of the model, data, warm start and RL."),
) -> None:
    """The whole recipe on a laptop CPU: tiny model, warm start, NeuraLadder, Observe-R1 RL, eval, report."""
    from observe_r1.demo import run_demo

    run_demo(out, quick=quick, seed=seed)


ladder_app = typer.Typer(help="NeuraLadder: build a progressive curriculum from verifiable multimodal QA.")
app.add_typer(ladder_app, name="ladder")


@ladder_app.command("build")
def ladder_build(
    source: list[str] = typer.Option(..., help="JSONL/Parquet file or datasets directory; repeat for several."),
    model: str = typer.Option(..., help="Rating model: hub id, local directory or LoRA adapter folder."),
    out: Path = typer.Option(..., help="Ladder directory (resumable: rerun the same command after a crash)."),
    k: int = typer.Option(8, help="Sampled responses per item; difficulty = 1 - correct/k."),
    temperature: float = typer.Option(1.0, help="Sampling temperature of the rating responses."),
    shard: str = typer.Option(None, help="i/n: rate only the items of shard i (by stable id hash)."),
    easy_filter: bool = typer.Option(True, help="Drop items answered correctly without reasoning."),
    prune_percentile: float = typer.Option(25.0, help="Drop d=0 items below this complexity percentile."),
    backend: str = typer.Option("hf", help="hf (batched transformers), vllm, or openai (a running server: --url)."),
    url: str = URL,
    served_model: str = SERVED_MODEL,
    api_key_env: str = API_KEY_ENV,
    concurrency: int = CONCURRENCY,
    skip_text_check: bool = SKIP_TEXT_CHECK,
    batch_size: int = typer.Option(BATCH_SIZE, help="Sequences per generate call (images are decoded per batch)."),
    max_new_tokens: int = typer.Option(MAX_NEW_TOKENS, help="Longest response, in tokens."),
    cache_implementation: str = typer.Option(
        "auto", help="hf backend KV cache: static (preallocated), dynamic, or auto (static on CUDA, dynamic on CPU)."
    ),
    compile_generation: str = typer.Option(
        "auto", help="hf backend: compile the decoding step (true/false; auto: with the static cache on CUDA)."
    ),
    skip_bad_rows: bool = typer.Option(False, help="Skip and count unusable rows instead of stopping."),
    strict: bool = typer.Option(False, help="Stop at a gold answer no rule can verify instead of dropping it."),
    image_root: Path = typer.Option(None, help="Folder to look for relative image paths in first."),
    seed: int = typer.Option(0, help="Seed of the rating samples (per chunk, so a resumed build is identical)."),
) -> None:
    """Ingest, filter, rate (k samples), prune and sort: writes ladder.jsonl, stats.json, review.jsonl."""
    from observe_r1.generation import make_generator
    from observe_r1.ladder.build import build, format_stats, plot_stats

    server = _server(backend, url, served_model, api_key_env, concurrency, skip_text_check, out)
    generator = make_generator(model, backend=backend, batch_size=batch_size, max_new_tokens=max_new_tokens,
                               cache_implementation=cache_implementation,
                               compile_generation=_tri_state(compile_generation), server=server)  # fmt: skip
    build(source, generator, out, k=k, temperature=temperature, shard=shard, use_easy_filter=easy_filter,
          prune_percentile=prune_percentile, skip_bad_rows=skip_bad_rows, strict=strict, image_root=image_root,
          seed=seed)  # fmt: skip
    plot_stats(out)
    typer.echo(format_stats(out))


@ladder_app.command("mix")
def ladder_mix(
    ladder_dir: Path = typer.Argument(..., help="A built ladder directory."),
    out: Path = typer.Option(..., help="Training JSONL to write (consumed in order by observe-r1 train)."),
    size: int = typer.Option(None, help="Number of items (default: all)."),
    max_difficulty: float = typer.Option(1.0, help="Leave out levels above this difficulty."),
    seed: int = typer.Option(0, help="Seed of the adjacent-level mixing."),
) -> None:
    """Sort easy -> hard and lay out the sequence with adjacent-level mixing."""
    from observe_r1.ladder.build import write_mix

    typer.echo(f"wrote {write_mix(ladder_dir, out, size=size, seed=seed, max_difficulty=max_difficulty)}")


@ladder_app.command("review")
def ladder_review(
    ladder_dir: Path = typer.Argument(..., help="A built ladder directory."),
    export: Path = typer.Option(None, help="Write the d=1 items (no sample solved them) for human review."),
    apply: Path = typer.Option(None, help="Apply a reviewed file: rows {id, answer} or {id, drop: true}."),
) -> None:
    """Export items whose gold answer may be wrong (--export), or apply corrections back (--apply)."""
    from observe_r1.jsonl import read_jsonl, write_jsonl
    from observe_r1.ladder.order import apply_review, review_candidates

    if not export and not apply:
        raise typer.BadParameter("give --export FILE (write the d=1 items) or --apply FILE (apply a review)")

    items = read_jsonl(ladder_dir / "ladder.jsonl")
    if export:
        rows = review_candidates(items)
        write_jsonl(export, [{k: it[k] for k in ("id", "problem", "answer", "images")} for it in rows])
        typer.echo(f"exported {len(rows)} items to {export}")
    if apply:
        kept, summary = apply_review(items, read_jsonl(apply))
        write_jsonl(ladder_dir / "ladder.jsonl", kept)
        typer.echo(f"applied {apply}: {summary}")


@ladder_app.command("merge")
def ladder_merge(
    shards: list[Path] = typer.Argument(..., help="Shard directories built with --shard i/n."),
    out: Path = typer.Option(..., help="Merged ladder directory."),
) -> None:
    """Join shard directories built with --shard i/n."""
    from observe_r1.ladder.build import merge

    typer.echo(f"merged into {merge(shards, out)}")


@ladder_app.command("stats")
def ladder_stats(ladder_dir: Path = typer.Argument(..., help="A built ladder directory.")) -> None:
    """Print stage counts and the level table; write stats.png."""
    from observe_r1.ladder.build import format_stats, plot_stats

    typer.echo(format_stats(ladder_dir))
    typer.echo(f"histogram: {plot_stats(ladder_dir)}")


def main() -> None:
    """Run the CLI; bad input (a DataError or a missing file) exits with status 2 and a one-line message."""
    from observe_r1.checkpoints import CheckpointError
    from observe_r1.config import ConfigError
    from observe_r1.data import DataError

    try:
        app()
    except (DataError, FileNotFoundError, ConfigError, CheckpointError) as err:  # names the file, row and field
        typer.secho(f"error: {err}", fg="red", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
