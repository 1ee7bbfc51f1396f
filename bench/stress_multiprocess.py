"""Run every 2-process entry point many times and count the runs that fail (issue #27: a rank aborted at exit).

    python bench/stress_multiprocess.py --runs 30 --out bench/results/stress_multiprocess
    python bench/stress_multiprocess.py --runs 10 --load 1     # with a busy-loop process beside each run
    PYTHONPATH=SNAPSHOT/src python SNAPSHOT/bench/stress_multiprocess.py   # a copy: edits elsewhere can't break it

Each round runs, under ``torchrun --standalone --nproc_per_node 2`` on CPU (gloo): the 2-process test scripts of
``tests/dist/`` (group split, dynamic sampling, paced curriculum, image positions, LoRA and frozen tower, resume,
FSDP2) and a 2-process ``observe-r1 train`` on synthetic data, plain and under FSDP2. A run fails when torchrun
exits non-zero; the failure's return code and the last lines of its output are kept. Writes ``stress.json`` (per
entry point: runs, failures, seconds) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))


def _spin(stop) -> None:  # a busy core, as when other work shares the machine
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def entry_points(model_dir: Path, data: Path, work: Path) -> dict[str, list[str]]:
    torchrun = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2"]
    dist = ROOT / "tests" / "dist"
    cli_args = ["--config", str(ROOT / "recipes/tiny_cpu.yaml"), "--model_name_or_path", str(model_dir),
                "--dataset_path", str(data), "--output_dir", str(work / "cli"), "--max_steps", "3", "--save_steps",
                "2", "--max_completion_length", "16", "--report_to", "none", "--use_cpu", "true"]  # fmt: skip
    return {
        "group_split": [*torchrun, str(dist / "group_split.py"), str(model_dir), str(work / "out.json")],
        "dynamic_sampling": [*torchrun, str(dist / "dynamic_sampling.py"), str(model_dir), str(work)],
        "paced": [*torchrun, str(dist / "dynamic_sampling.py"), str(model_dir), str(work), "paced"],
        "image_positions": [*torchrun, str(dist / "image_positions.py"), str(model_dir), str(work)],
        "lora_freeze": [*torchrun, str(dist / "lora_freeze.py"), str(model_dir), str(work)],
        "resume": [*torchrun, str(dist / "resume.py"), str(model_dir), str(work)],
        "cli_train": [*torchrun, "-m", "observe_r1.cli", "train", *cli_args],
        # FSDP2 on CPU processes through the test-only shim (tests/dist/shard_on_cpu.py)
        "fsdp": [*torchrun, str(dist / "fsdp.py"), str(model_dir), str(work / "fsdp")],
        "cli_fsdp": [*torchrun, str(dist / "shard_on_cpu.py"), "train", *cli_args, "--fsdp", "full_shard"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30, help="rounds over every entry point")
    parser.add_argument("--load", type=int, default=0, help="busy-loop processes running beside each run")
    parser.add_argument("--only", nargs="*", help="entry points to run (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "stress_multiprocess")
    args = parser.parse_args()

    from observe_r1.models import build_tiny_model
    from observe_r1.synth import generate_items, write_dataset

    args.out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="stress-"))
    model_dir = build_tiny_model(scratch / "tiny", size="tiny", seed=0)
    data = write_dataset(generate_items(32, seed=1), scratch / "data")
    stop = mp.Event()
    spinners = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(args.load)]
    for p in spinners:
        p.start()
    results: dict[str, dict] = {}
    try:
        for run in range(args.runs):
            for name, cmd in entry_points(model_dir, data, scratch / "work").items():
                if args.only and name not in args.only:
                    continue
                work = scratch / "work"
                subprocess.run(["rm", "-rf", str(work)], check=True)
                work.mkdir()
                start = time.time()
                done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
                entry = results.setdefault(name, {"runs": 0, "failures": 0, "seconds": 0.0, "failed": []})
                entry["runs"] += 1
                entry["seconds"] += time.time() - start
                if done.returncode != 0:
                    entry["failures"] += 1
                    log = args.out / "failures" / f"{name}-{run}.log"  # the whole output: the cause is rarely last
                    log.parent.mkdir(exist_ok=True)
                    log.write_text(done.stdout + done.stderr)
                    entry["failed"].append({"run": run, "returncode": done.returncode, "log": str(log),
                                            "tail": (done.stdout + done.stderr)[-1500:]})  # fmt: skip
                print(f"run {run + 1}/{args.runs} {name}: rc {done.returncode} ({time.time() - start:.1f} s)",
                      flush=True)  # fmt: skip
                (args.out / "stress.json").write_text(json.dumps({"load": args.load, "results": results}, indent=1))
    finally:
        stop.set()
    print(f"\n{'entry point':<18}{'runs':>6}{'failures':>10}{'s/run':>8}")
    for name, entry in results.items():
        print(f"{name:<18}{entry['runs']:>6}{entry['failures']:>10}{entry['seconds'] / entry['runs']:>8.1f}")


if __name__ == "__main__":
    main()
