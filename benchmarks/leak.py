"""Does training cost stay linear in the number of steps? A long ``gankit.run.train`` run, read back from
its ``metrics.jsonl``.

    python benchmarks/leak.py                  # 20,000 steps of a small MLP GAN on fake data, logged every 1,000
    python benchmarks/leak.py --steps 300      # a smoke run (logged every 30 steps)

The run is an ordinary one (sample grid, checkpoint and metrics line at every epoch end), on ``--dataset fake``
sized so that one epoch is one log window: every window then does the same work. For each window the script
prints the seconds it took (from ``elapsed_s``) and the process's peak resident memory at its end
(``peak_memory_mb``). Windows 1 and 2 hold the one-time costs (first steps, allocator growth, and the first
epoch end, whose grid and checkpoint are written after window 1's log line), so window 3 is the baseline: the
script exits 1 when the last window took more than ``--max-time-ratio`` (1.3) times as long as window 3, or when
the peak memory grew by more than ``--max-memory-growth`` (10%) from the end of window 3 to the end of the run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from gankit.files import read_metrics_log
from gankit.run import build_config, train

BASELINE = 3
"""The window the last one is compared with: windows 1 and 2 carry one-time costs."""


def windows(records: list[dict[str, Any]], log_every: int) -> list[dict[str, Any]]:
    """One entry per ``log_every`` steps: first and last step, seconds, milliseconds per step, peak memory."""
    logged = [record for record in records if record["step"] % log_every == 0]
    result = []
    previous_step, previous_elapsed = 0, 0.0
    for record in logged:
        seconds = record["elapsed_s"] - previous_elapsed
        steps = record["step"] - previous_step
        result.append(
            {
                "first_step": previous_step + 1,
                "last_step": record["step"],
                "seconds": seconds,
                "ms_per_step": 1000 * seconds / steps,
                "peak_memory_mb": record["peak_memory_mb"],
            }
        )
        previous_step, previous_elapsed = record["step"], record["elapsed_s"]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20_000, help="generator steps to train (default 20000)")
    parser.add_argument("--log-every", type=int, default=None, help="steps per window (default: 1000, or steps/10)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    parser.add_argument("--hidden", type=int, default=64, help="MLP width of G and D (default 64)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to train (default cpu)")
    parser.add_argument("--max-time-ratio", type=float, default=1.3, help="last window / window 3 (default 1.3)")
    parser.add_argument("--max-memory-growth", type=float, default=0.10, help="of peak memory (default 0.10)")
    parser.add_argument("--out", type=Path, default=None, help="keep the run folder here (default: temporary)")
    parser.add_argument("--json", type=Path, default=None, help="also write the windows and ratios here")
    args = parser.parse_args(argv)
    log_every = args.log_every or min(1000, max(1, args.steps // 10))
    if args.steps < 4 * log_every:
        parser.error(f"--steps {args.steps} gives fewer than 4 windows of {log_every} steps; the check needs 4")

    # Imported now so that the first sample grid does not charge torchvision's import to a window.
    import torchvision.utils  # noqa: F401

    with tempfile.TemporaryDirectory(prefix="gankit-leak-") as tmp:
        out = args.out or Path(tmp) / "run"
        config = build_config(
            {
                "generator": "mlp",
                "loss": "nonsat",
                "dataset": "fake",
                "dataset_options": {"size": args.batch_size * log_every},  # one epoch per window
                "generator_options": {"hidden": args.hidden},
                "discriminator_options": {"hidden": args.hidden},
                "batch_size": args.batch_size,
                "epochs": -(-args.steps // log_every),
                "max_steps": args.steps,
                "log_every": log_every,
                "device": args.device,
                "out": out,
            }
        )
        print(
            f"training {args.steps} steps: MLP GAN (hidden {args.hidden}), batch {args.batch_size}, fake data of "
            f"{args.batch_size * log_every} images (one epoch per window), device {args.device}",
            flush=True,
        )
        result = train(config, overwrite=args.out is not None)
        records = read_metrics_log(result.run_dir / "metrics.jsonl")

    rows = windows(records, log_every)
    print(f"\nPer window of {log_every} steps")
    print(f"  {'window':>6}  {'steps':>13}  {'seconds':>9}  {'ms/step':>8}  {'peak RSS MB':>11}")
    for index, row in enumerate(rows, start=1):
        steps = f"{row['first_step']}-{row['last_step']}"
        print(
            f"  {index:>6}  {steps:>13}  {row['seconds']:>9.2f}  {row['ms_per_step']:>8.3f}  "
            f"{row['peak_memory_mb']:>11.1f}"
        )
    baseline, last = rows[BASELINE - 1], rows[-1]
    time_ratio = last["seconds"] / baseline["seconds"]
    memory_growth = last["peak_memory_mb"] / baseline["peak_memory_mb"] - 1.0
    time_ok = time_ratio <= args.max_time_ratio
    memory_ok = memory_growth <= args.max_memory_growth
    print(f"\nLast window vs window {BASELINE} (windows before it are warm-up), over {len(rows)} windows")
    print(f"  time ratio:    {time_ratio:.3f}  (limit {args.max_time_ratio:g})  {'ok' if time_ok else 'FAILED'}")
    print(
        f"  memory growth: {100 * memory_growth:+.1f}%  (limit {100 * args.max_memory_growth:+.0f}%)  "
        f"{'ok' if memory_ok else 'FAILED'}"
    )
    first = rows[0]
    print(
        f"  (last vs window 1, warm-up included: time ratio {last['seconds'] / first['seconds']:.3f}, memory growth "
        f"{100 * (last['peak_memory_mb'] / first['peak_memory_mb'] - 1):+.1f}%; not checked)"
    )
    if args.json is not None:
        summary = {"time_ratio": time_ratio, "memory_growth": memory_growth, "time_ok": time_ok, "memory_ok": memory_ok}
        report = {"settings": {**vars(args), "log_every": log_every}, "windows": rows, **summary}
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0 if time_ok and memory_ok else 1


if __name__ == "__main__":
    sys.exit(main())
