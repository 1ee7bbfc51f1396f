"""The ``observe-r1`` command line. Every command is a thin wrapper: the logic lives in the modules it calls."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    help="Observe-R1: progressive RL for multimodal reasoning, on TRL.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.command("tiny-model")
def tiny_model(
    out_dir: Path = typer.Argument(..., help="Directory to write the model, processor and generation config to."),
    size: str = typer.Option("tiny", help="tiny (~0.2M params), small (~0.6M) or base (~1.8M)."),
    seed: int = typer.Option(0, help="Weights are identical for the same seed."),
) -> None:
    """Build a randomly initialised Qwen2.5-VL locally (no download); loads with the HF auto classes."""
    from observe_r1.models import build_tiny_model, load_policy, num_parameters

    path = build_tiny_model(out_dir, size=size, seed=seed)
    model, _ = load_policy(path)
    typer.echo(f"wrote {size} Qwen2.5-VL ({num_parameters(model):,} parameters) to {path}")


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


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(ctx: typer.Context) -> None:
    """Observe-R1 RL with TRL. Takes TRL-style arguments: --config recipe.yaml, --field value overrides.

    Example: observe-r1 train --config recipes/tiny_cpu.yaml --max_steps 20 --output_dir runs/r1
    """
    from observe_r1.train import parse_train_args, run_training

    script_args, config = parse_train_args(list(ctx.args))
    run_training(script_args, config)


def main() -> None:
    from observe_r1.data import DataError

    try:
        app()
    except (DataError, FileNotFoundError) as err:  # bad input: the message names the file, row and field
        typer.secho(f"error: {err}", fg="red", err=True)
        raise SystemExit(2) from None
