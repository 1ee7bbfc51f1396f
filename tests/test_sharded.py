"""Sharded training (FSDP2) proven on 2 CPU processes, resume modes, and launches that would not shard.

accelerate shards only on accelerators, so the 2-process tests run observe-r1 through ``tests/dist/shard_on_cpu.py``,
a test-only shim that keeps accelerate's FSDP plugin on CPU processes; from there on the code is accelerate's and
torch's own (``fully_shard``, DTensor parameters, collective state dicts, DCP checkpoints).
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from observe_r1.checkpoints import (
    COMPLETE_MARKER,
    CheckpointError,
    check_fsdp_checkpoint,
    fsdp_layout,
    mark_complete,
    reading_fsdp_layout,
)
from observe_r1.cli import app
from observe_r1.config import ConfigError
from observe_r1.models import load_policy
from observe_r1.synth import generate_items, write_dataset
from observe_r1.train import build_trainer, resolve_checkpoint, resume_mode
from tests.helpers import run_two_processes, run_until_killed, synth_dataset, tiny_config

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SHIM = ROOT / "tests" / "dist" / "shard_on_cpu.py"
FSDP_ATOL = 1e-5  # DDP vs FSDP2 after the same steps: equal up to the order of gradient reductions
PACKED_ATOL = 1e-4  # packed vs padded weights after 4 FSDP2 steps at lr 1e-2 (measured 1.1e-5)


@pytest.mark.slow
def test_fsdp2_trains_resumes_bit_identical_and_exports_whole_models(tiny_model_dir, tiny_qwen3_dir, tmp_path):
    ranks = run_two_processes("fsdp.py", tiny_model_dir, tmp_path, tiny_qwen3_dir, ranks_dir=tmp_path)
    for rank in ranks:
        for mode in ("full", "frozen_tower", "lora", "qwen3", "packed"):
            run = rank[mode]
            assert run["engine"] == run["resumed_engine"] == "FSDP"
            assert run["sharded"] == run["params"]  # every parameter a DTensor ...
            assert all(2 * local >= rows >= local for local, rows in run["rows"])  # ... holding about half its rows
            assert sum(local for local, _ in run["rows"]) < sum(rows for _, rows in run["rows"])
            assert run["grad_forwards"] >= 4 and run["misaligned"] == 0  # image marks on the image tokens, always
            assert run["moved_by_step_2"] > 0
            assert (
                run["differ_at_restart"] == [] and run["differ_at_end"] == []
            )  # resumed = uninterrupted, bit for bit
        assert rank["frozen_tower"]["moved_by_step_2"] < rank["full"]["moved_by_step_2"] == 57
        assert rank["qwen3"]["moved_by_step_2"] == rank["qwen3"]["params"]  # deepstack mergers included
        assert all(".visual.blocks." not in n for n in rank["frozen_tower"]["moved_by_end"])
        assert all("lora_" in n for n in rank["lora"]["moved_by_end"])
        assert rank["ddp"]["engine"] == "MULTI_CPU" and rank["ddp"]["sharded"] == 0
    assert ranks[0]["ddp"]["max_abs_diff_to_fsdp"] <= FSDP_ATOL
    # padding-free updates under FSDP2 (one packed row per micro-batch, wrapped model): the padded run's weights
    packed, padded = torch.load(tmp_path / "packed" / "end.pt"), torch.load(tmp_path / "full" / "end.pt")
    assert max((packed[n] - padded[n]).abs().max().item() for n in padded) <= PACKED_ATOL
    for mode in ("full", "frozen_tower", "qwen3"):  # final/ is the whole model, gathered from both ranks' shards
        end = torch.load(tmp_path / mode / "end.pt")
        model, _ = load_policy(tmp_path / mode / "straight" / "final")
        loaded = dict(model.named_parameters())
        assert loaded.keys() == end.keys() and all(torch.equal(loaded[n], end[n]) for n in end)
    adapter = tmp_path / "lora" / "straight" / "final"
    lora_end = torch.load(tmp_path / "lora" / "end.pt")
    saved = load_file(adapter / "adapter_model.safetensors")
    trained = {n.replace(".default", ""): t for n, t in lora_end.items() if "lora_" in n}
    assert len(saved) == len(trained) > 0
    assert all(torch.equal(saved[n], trained[n]) for n in saved)
    merged, _ = load_policy(adapter)  # the adapter loads on its recorded base
    assert not any("lora_" in n for n, _ in merged.named_parameters())


FSDP_RECIPE = ROOT / "recipes" / "accelerate" / "fsdp.yaml"


def _accelerate(*args):
    """``accelerate launch`` with the documented FSDP2 config, on 2 CPU processes in fp32."""
    return [str(BIN / "accelerate"), "launch", "--config_file", str(FSDP_RECIPE), "--num_processes", "2",
            "--mixed_precision", "no", "--main_process_port", "0", *map(str, args)]  # fmt: skip


def _train(model_dir, data, out, *extra):
    return ["train", "--config", ROOT / "recipes/tiny_cpu.yaml", "--model_name_or_path", model_dir,
            "--dataset_path", data, "--output_dir", out, "--max_completion_length", "16",
            "--per_device_train_batch_size", "4", "--report_to", "none", *extra]  # fmt: skip


@pytest.mark.timeout(600)
@pytest.mark.slow
def test_fsdp2_recipe_kill_9_resume_auto_and_eval(tiny_model_dir, tmp_path):
    """The CLI under the documented FSDP2 config (sharded DCP checkpoints) with dynamic sampling and the paced
    ladder: killed -9 after checkpoint-4 and requeued with the same command (``--resume auto``), it ends where the
    uninterrupted run ends, bit for bit; its final/ is one loadable model that ``eval`` runs on."""
    items = generate_items(40, seed=3)
    for i, item in enumerate(items):
        item["stretch_level"] = i // 5
    data = write_dataset(items, tmp_path / "data")
    extra = ["--max_steps", "8", "--save_steps", "2", "--dynamic-sampling", "true", "--max-generation-rounds", "2",
             "--curriculum", "paced", "--pace-window", "1", "--pace-threshold", "0", "--resume", "auto"]  # fmt: skip
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1", "PARITY_REWARD": "1"}
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    subprocess.run(_accelerate(SHIM, *_train(tiny_model_dir, data, straight, *extra)), check=True,
                   capture_output=True, env=env, timeout=300)  # fmt: skip
    killed_after = f"checkpoint-4/{COMPLETE_MARKER}"  # a complete, sharded checkpoint-4
    code = run_until_killed(_accelerate(SHIM, *_train(tiny_model_dir, data, crashed, *extra)), crashed,
                            checkpoint=killed_after, consumed_lines=0, env=env, poll=0.02)  # fmt: skip
    assert code == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (crashed / "final").exists()
    assert (crashed / "checkpoint-4" / "pytorch_model_fsdp_0").is_dir()  # mid-run checkpoints stay sharded
    assert not list((crashed / "checkpoint-4").glob("*.safetensors"))
    resumed = subprocess.run(_accelerate(SHIM, *_train(tiny_model_dir, data, crashed, *extra)), capture_output=True,
                             text=True, env=env, timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    def consumed(out):
        return [json.loads(line) for line in (out / "consumed.jsonl").read_text().splitlines()]

    assert consumed(crashed) == consumed(straight) and len(consumed(straight)) == 8
    assert sum(len(row["skipped"]) for row in consumed(straight)) > 0  # the pace really skipped
    assert sum(len(row["dropped"]) for row in consumed(straight)) > 0  # dynamic sampling really dropped
    final = load_file(crashed / "final" / "model.safetensors")
    expected = load_file(straight / "final" / "model.safetensors")
    assert final.keys() == expected.keys() and all(torch.equal(final[k], expected[k]) for k in final)
    base = load_file(Path(tiny_model_dir) / "model.safetensors")
    assert sum(not torch.equal(expected[k], base[k]) for k in base) == len(base)  # training moved every weight
    result = CliRunner().invoke(app, ["eval", "--model", str(crashed / "final"), "--benchmark", str(data), "--out",
                                      str(tmp_path / "eval"), "--limit", "4", "--max-new-tokens", "8"])  # fmt: skip
    assert result.exit_code == 0, result.output[-2000:]
    assert len((tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()) == 4


@pytest.mark.slow
def test_fsdp_recipe_on_cpu_processes_is_refused_in_one_line(tiny_model_dir, tmp_path):
    """Without the shim, accelerate runs the FSDP config as plain DDP on CPU processes: observe-r1 stops instead."""
    data = write_dataset(generate_items(8, seed=0), tmp_path / "data")
    cmd = _accelerate("-m", "observe_r1.cli", *_train(tiny_model_dir, data, tmp_path / "out"))
    result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            timeout=300)  # fmt: skip
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors and errors[0].startswith("error: asked for FSDP but accelerate runs MULTI_CPU on 2 CPU processes")
    assert "Fix: FSDP needs GPUs" in errors[0]
    assert not (tmp_path / "out" / "checkpoint-1").exists()


def test_fsdp_asked_and_not_running_is_refused(tiny_model_dir, tmp_path, monkeypatch):
    """One process with an accelerate FSDP request (its environment) runs unsharded: refused before training."""
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    model, processor = load_policy(tiny_model_dir)
    _, dataset = synth_dataset(tmp_path, n=4)
    with pytest.raises(ConfigError, match=r"asked for FSDP but accelerate runs NO on 1 CPU processes"):
        build_trainer(model, processor, dataset, tiny_config(tmp_path / "out"))


@pytest.mark.slow
def test_deepspeed_zero3_on_cpu_processes_exports_every_weight(tiny_model_dir, tmp_path):
    """DeepSpeed runs on CPU processes as it is (its CPU accelerator; no shim). ZeRO-3 shards the weights, so the
    final export is collective: with every rank in it, final/ holds every weight, each moved by training. (A resume
    from a ZeRO-3 checkpoint goes through transformers' DeepSpeed loader; checked by hand: bit-identical.)"""
    pytest.importorskip("deepspeed")
    data = write_dataset(generate_items(16, seed=1), tmp_path / "data")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu", "PARITY_REWARD": "1"}
    launch = [str(BIN / "accelerate"), "launch", "--config_file", str(ROOT / "recipes/accelerate/zero3.yaml"),
              "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", "0", str(SHIM)]  # fmt: skip
    out = tmp_path / "run"
    train = _train(tiny_model_dir, data, out, "--max_steps", "2", "--save_steps", "2")
    result = subprocess.run([*launch, *map(str, train)], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "checkpoint-2" / "global_step2").is_dir()  # DeepSpeed's own checkpoint: the engine ran
    base = load_file(Path(tiny_model_dir) / "model.safetensors")
    final = load_file(out / "final" / "model.safetensors")
    assert final.keys() == base.keys()  # every weight, gathered from both ranks' partitions
    assert all(final[k].shape == base[k].shape for k in base)
    assert sum(not torch.equal(final[k], base[k]) for k in base) == len(base)  # and training moved them all


def test_resume_modes(tmp_path):
    assert resolve_checkpoint(tmp_path, "false") is None
    with pytest.raises(FileNotFoundError, match="use --resume auto to start fresh"):
        resolve_checkpoint(tmp_path, True)
    assert resolve_checkpoint(tmp_path, "auto") is None  # a requeued job killed before its first checkpoint
    torn = tmp_path / "checkpoint-2"
    torn.mkdir()
    assert resolve_checkpoint(tmp_path, "auto") is None and not torn.exists()  # removed: the fresh run rewrites it
    for step in (2, 4):
        (tmp_path / f"checkpoint-{step}").mkdir()
        mark_complete(tmp_path / f"checkpoint-{step}", step)
    (tmp_path / "checkpoint-6").mkdir()
    assert (
        resolve_checkpoint(tmp_path, "auto") == resolve_checkpoint(tmp_path, "true") == str(tmp_path / "checkpoint-4")
    )
    with pytest.raises(ConfigError, match="--resume must be true, false or auto"):
        resume_mode("sometimes")


def _fsdp_checkpoint(folder: Path, state: dict, sharded: bool) -> Path:
    """A checkpoint folder holding ``state`` as accelerate writes FSDP weights (DCP shards or one full file)."""
    folder.mkdir(parents=True)
    if sharded:
        import torch.distributed.checkpoint as dcp

        dcp.save({"model": state}, checkpoint_id=str(folder / "pytorch_model_fsdp_0"))
    else:
        torch.save(state, folder / "pytorch_model_fsdp.bin")
    return folder


@pytest.mark.parametrize("sharded", [True, False], ids=["sharded", "full"])
def test_an_fsdp_checkpoint_missing_a_weight_is_refused_before_loading(tiny_model_dir, tmp_path, sharded):
    model, _ = load_policy(tiny_model_dir)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    check_fsdp_checkpoint(model, _fsdp_checkpoint(tmp_path / "whole", state, sharded))  # complete: accepted
    assert fsdp_layout(tmp_path / "whole") == ("SHARDED_STATE_DICT" if sharded else "FULL_STATE_DICT")
    dropped = "model.visual.blocks.1.mlp.up_proj.weight"
    partial = _fsdp_checkpoint(tmp_path / "partial", {k: v for k, v in state.items() if k != dropped}, sharded)
    with pytest.raises(CheckpointError, match=rf"1 trained weights are not in it \['{dropped}'\]"):
        check_fsdp_checkpoint(model, partial)
    extra = _fsdp_checkpoint(tmp_path / "extra", {**state, "model.visual.blocks.9.bias": torch.zeros(1)}, sharded)
    with pytest.raises(CheckpointError, match=r"1 of its tensors have no weight \['model.visual.blocks.9.bias'\]"):
        check_fsdp_checkpoint(model, extra)
    for p in model.model.visual.parameters():  # a frozen weight may be absent (LoRA and frozen-tower checkpoints)
        p.requires_grad_(False)
    check_fsdp_checkpoint(model, partial)


def test_resume_reads_the_fsdp_layout_the_checkpoint_was_written_in(tmp_path):
    from types import SimpleNamespace

    from accelerate.utils import FullyShardedDataParallelPlugin

    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, state_dict_type="FULL_STATE_DICT")
    accelerator = SimpleNamespace(state=SimpleNamespace(fsdp_plugin=plugin))
    folder = _fsdp_checkpoint(tmp_path / "checkpoint-2", {"w": torch.zeros(2)}, sharded=True)
    config = plugin.state_dict_config
    with reading_fsdp_layout(accelerator, folder):
        assert str(plugin.state_dict_type).endswith("SHARDED_STATE_DICT")
        assert type(plugin.state_dict_config).__name__ == "ShardedStateDictConfig"
    assert str(plugin.state_dict_type).endswith("FULL_STATE_DICT") and plugin.state_dict_config is config
    with reading_fsdp_layout(SimpleNamespace(state=SimpleNamespace(fsdp_plugin=None)), folder):
        pass  # without FSDP: nothing to switch
