"""The CUDA checks, end to end, and the GPU rows of docs/performance.md (section 7), in one script.

    python scripts/gpu_check.py                      # on a CUDA machine: under 8 minutes on one GPU
    python scripts/gpu_check.py --cpu-smoke          # the same code on the CPU at tiny sizes, in seconds

It trains through ``gankit.run.train`` exactly as the commands of performance.md section 7 do:

- DCGAN-64 with ``--amp off`` (fp32), ``bf16``, ``fp16`` and ``bf16 --compile`` (500 steps each), and DCGAN-28
  with the default AMP (2,000 steps); images per second are the median of the ``images_per_sec`` log lines after
  the first (compilation and warm-up), peak memory the CUDA allocator's peak of that run;
- and checks that each run's losses stayed finite, that its ``config.json`` names the precision asked for, that
  fp16's gradient scaler did not skip every step, that ``gankit train --resume`` (a subprocess, as a user runs
  it) continues an interrupted run to its last step with contiguous metric lines, and that the export loads with
  ``load_generator`` on the device and on the CPU and draws the same finite images on both.

It prints the rows of the table and a PASS/FAIL line per check, writes them with the raw figures to ``--json``
and, with ``--markdown``, writes the table there. It exits 1 when a check fails. The data is ``--dataset fake``
with MNIST's shape by default (throughput does not depend on pixel values, and a GPU machine may be offline);
``--dataset mnist`` uses the real one.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gankit.export import load_generator
from gankit.files import read_metrics_log
from gankit.pictures import sample_images
from gankit.run import TrainConfig, build_config, train

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Sizes:
    device: str
    side_64: int  # the image side of the "DCGAN-64" runs
    steps_64: int
    steps_28: int
    batch_size: int
    width: int | None
    log_every: int
    data_size: int
    compile: bool


GPU = Sizes(
    "cuda", 64, steps_64=500, steps_28=2000, batch_size=128, width=None, log_every=50, data_size=60_000, compile=True
)
# The smoke run checks the code paths, not the figures: "DCGAN-64" at side 32 (the same plugin code), one thread (a
# test suite runs it next to other processes), 12 steps (fp16's scaler skips the first several: its scale starts at
# 2^16 and halves at each overflow).
SMOKE = Sizes("cpu", 32, steps_64=12, steps_28=4, batch_size=4, width=2, log_every=2, data_size=64, compile=False)


@dataclass
class Report:
    rows: list[dict[str, Any]] = field(default_factory=list)
    checks: list[tuple[str, bool, str]] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append((name, bool(ok), detail))
        print(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)


def config(
    sizes: Sizes, args: argparse.Namespace, out: Path, *, image_size: int, amp: str, steps: int, **extra: Any
) -> TrainConfig:
    options = {"width": sizes.width} if sizes.width else {}
    data = {"size": sizes.data_size, "image_size": 28} if args.dataset == "fake" else {}
    return build_config(
        {"generator": "dcgan", "loss": "nonsat", "dataset": args.dataset, "dataset_options": data,
         "generator_options": options, "discriminator_options": options, "image_size": image_size,
         "batch_size": sizes.batch_size, "device": sizes.device, "amp": amp, "max_steps": steps, "epochs": 1000,
         "log_every": sizes.log_every, "checkpoint_every": max(steps // 2, 1), "sample_count": 16, "out": out,
         **extra}
    )  # fmt: skip


def metrics(run: Path) -> list[dict[str, Any]]:
    return read_metrics_log(run / "metrics.jsonl")


def timed_run(name: str, sizes: Sizes, args: argparse.Namespace, report: Report, **settings: Any) -> Path:
    """One training run; a row of images/second and peak memory; checks of its losses and precision."""
    out: Path = args.out / name.replace(" ", "-").replace(",", "")
    cfg = config(sizes, args, out, **settings)
    if sizes.device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    train(cfg, overwrite=True)
    wall = time.perf_counter() - started
    lines = metrics(out)
    speeds = [m["images_per_sec"] for m in lines[1:]] or [lines[-1]["images_per_sec"]]
    peak = torch.cuda.max_memory_allocated() / 2**20 if sizes.device == "cuda" else lines[-1]["peak_memory_mb"]
    row = {"run": name, "images_per_sec": statistics.median(speeds), "peak_memory_mib": peak, "wall_s": wall,
           "steps": lines[-1]["step"], "amp": settings["amp"], "compile": settings.get("compile", False)}  # fmt: skip
    report.rows.append(row)
    print(f"{name}: {row['images_per_sec']:,.0f} img/s, peak {peak:,.0f} MiB, {wall:.1f} s", flush=True)
    finite = all(math.isfinite(m[k]) for m in lines for k in ("d_loss", "g_loss"))
    report.check(f"{name}: {len(lines)} metric lines, losses finite", finite and lines[-1]["step"] == settings["steps"])
    resolved = json.loads((out / "config.json").read_text())["resolved_amp"]
    expected = {"off": "off", "bf16": "bf16", "fp16": "fp16"}.get(settings["amp"])
    if expected:
        report.check(f"{name}: trained in {expected}", resolved == expected, f"config.json says {resolved}")
    if resolved == "fp16":
        skipped = sum(m.get("fp16_skipped_steps", 0) for m in lines)
        report.check(f"{name}: fp16 scaler skipped {skipped} of {settings['steps']} steps", skipped < settings["steps"])
    return out


def check_resume(sizes: Sizes, args: argparse.Namespace, report: Report) -> None:
    """Train half the steps, then ``gankit train --resume`` to the end in a subprocess, as a user would."""
    steps = max(sizes.steps_28 // 4, 4)
    out = args.out / "resume"
    train(config(sizes, args, out, image_size=28, amp="auto", steps=steps // 2, log_every=1), overwrite=True)
    command = [sys.executable, "-m", "gankit", "train", "--resume", str(out), "--max-steps", str(steps), "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    ok = done.returncode == 0
    steps_logged = [m["step"] for m in metrics(out)] if ok else []
    report.check(
        f"resume: {steps // 2} steps, then `gankit train --resume` to {steps}",
        ok and steps_logged == list(range(1, steps + 1)) and (out / "generator.safetensors").exists(),
        f"exit {done.returncode} {done.stderr.strip()[-300:]}" if not ok else f"metric steps 1..{steps_logged[-1]}",
    )


def check_export(run: Path, sizes: Sizes, report: Report) -> None:
    """The export loads on the device and on the CPU, and both draw the same finite images."""
    on_device = sample_images(load_generator(run / "generator.safetensors", device=sizes.device), 64, seed=0)
    on_cpu = sample_images(load_generator(run / "generator.safetensors", device="cpu"), 64, seed=0)
    gap = float((on_device - on_cpu).abs().max())
    ok = bool(torch.isfinite(on_device).all()) and gap < 1e-2
    report.check(f"export of {run.name}: loads on {sizes.device} and cpu, same images", ok, f"max gap {gap:.2e}")


def machine(sizes: Sizes) -> dict[str, Any]:
    info: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version()}
    if sizes.device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda,
                    bf16=torch.cuda.is_bf16_supported())  # fmt: skip
    return info


def table(report: Report) -> str:
    fp32 = next((r["images_per_sec"] for r in report.rows if r["run"] == "DCGAN-64 fp32"), None)
    lines = ["| run | img/s | ratio to fp32 | peak memory (MiB) |", "|---|---|---|---|"]
    for row in report.rows:
        ratio = "-" if not row["run"].startswith("DCGAN-64") or not fp32 else f"{row['images_per_sec'] / fp32:.2f}"
        name = row["run"].replace("--compile", "`--compile`")
        lines.append(f"| {name} | {row['images_per_sec']:,.0f} | {ratio} | {row['peak_memory_mib']:,.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on the CPU, a few steps (seconds)")
    parser.add_argument("--dataset", choices=("fake", "mnist"), default="fake")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu_check")
    parser.add_argument("--json", type=Path, default=None, help="default: OUT/gpu_check.json")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    sizes = SMOKE if args.cpu_smoke else GPU
    if sizes.device == "cuda" and not torch.cuda.is_available():
        parser.error("no CUDA GPU here; run with --cpu-smoke to check the script on the CPU")
    if args.cpu_smoke:
        torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    report = Report()
    print("machine:", machine(sizes), flush=True)

    timed_run("DCGAN-64 fp32", sizes, args, report, image_size=sizes.side_64, amp="off", steps=sizes.steps_64)
    bf16 = timed_run("DCGAN-64 bf16", sizes, args, report, image_size=sizes.side_64, amp="bf16", steps=sizes.steps_64)
    fp16 = timed_run("DCGAN-64 fp16", sizes, args, report, image_size=sizes.side_64, amp="fp16", steps=sizes.steps_64)
    if sizes.compile:
        timed_run("DCGAN-64 bf16, --compile", sizes, args, report, image_size=sizes.side_64, amp="bf16",
                  steps=sizes.steps_64, compile=True)  # fmt: skip
    else:
        print("DCGAN-64 bf16, --compile: skipped (--cpu-smoke; torch.compile on the CPU takes minutes)")
    timed_run("DCGAN-28 (default AMP)", sizes, args, report, image_size=28, amp="auto", steps=sizes.steps_28)
    check_resume(sizes, args, report)
    check_export(bf16, sizes, report)
    check_export(fp16, sizes, report)

    elapsed = time.perf_counter() - started
    text = table(report)
    print("\nGPU rows of docs/performance.md (section 7):\n" + text)
    failed = [name for name, ok, _ in report.checks if not ok]
    print(f"\n{len(report.checks) - len(failed)}/{len(report.checks)} checks passed in {elapsed:.0f} s")
    result = {"machine": machine(sizes), "cpu_smoke": args.cpu_smoke, "elapsed_s": elapsed, "rows": report.rows,
              "checks": [{"name": n, "ok": ok, "detail": d} for n, ok, d in report.checks], "table": text}  # fmt: skip
    (args.json or args.out / "gpu_check.json").write_text(json.dumps(result, indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text(text + "\n")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
