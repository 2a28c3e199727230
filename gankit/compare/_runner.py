"""Running a compare: its folder, the cost of each arm's step, and every (arm, seed) run, resumable at any point.

The compare folder records the arms and their measured costs (``compare.json``, in one atomic write) before the
first run starts; each run is an ordinary run folder under ``runs/``. Running the same compare again continues it: a
finished run is kept as it is, an interrupted one resumes from its checkpoint (bit-identical on the CPU, as
``gankit train --resume`` is), and one not started yet starts. A folder holding another compare is refused.

Runs train one after another in this process, or up to ``parallel`` at once, each in its own process (its own
session, so a Ctrl-C reaches it once, through this one; it stops itself if this process dies).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gankit.compare._costs import Cost, Measured, measure_costs
from gankit.compare._plan import Job, Plan
from gankit.compare._progress import CompareProgress, JobReporter, SilentProgress
from gankit.errors import ConfigError, GankitError, TrainingInterrupted
from gankit.files import atomic_write_bytes, read_metrics_log
from gankit.run import RunFolder, build_config, load_data, resolve_device, resume_config, train

PLAN_FILE = "compare.json"
FINISHED_FILE = "finished.json"
COST_BLOCK = 10
"""Steps per block when measuring costs: a few seconds per round on a CPU for MNIST's DCGAN."""


def run_compare(
    plan: Plan,
    *,
    parallel: int = 1,
    cost_rounds: int = 5,
    remeasure: bool = False,
    progress: CompareProgress | None = None,
) -> tuple[list[Job], Measured]:
    """Train every run of ``plan`` that is not finished yet; return the runs and the measured costs.

    Nothing is written before the plan is known to fit the folder and the costs are measured (which also builds
    every arm once, so a plugin that fails does so before anything starts). SIGINT/SIGTERM stop the running runs
    at their next log point, with a checkpoint, and raise ``TrainingInterrupted``.

    ``remeasure`` measures the costs of an existing compare at equal steps again (after a first measurement on a
    busy machine): they change only its times and its plot against compute, never a run.
    """
    progress = progress or SilentProgress()
    recorded = _check_folder(plan)
    if recorded is not None and remeasure and plan.budget.by_compute:
        raise ConfigError(
            f"{plan.out} compares at equal compute, where the measured costs set each run's steps: its costs cannot "
            "be measured again without changing its runs; choose another --out for a new compare"
        )
    if recorded is not None and not remeasure:
        measured = recorded[1]
    else:
        measured = _measure(plan, cost_rounds, progress)
        _record(plan, measured, earlier=recorded[0] if recorded is not None else None)
    jobs = plan.jobs(measured.seconds_per_step())
    finished = _finished(plan.out)
    states = {job.label: _state(job, finished) for job in jobs}
    progress.start(jobs, {label: step for label, (_, step) in states.items()})
    for job in jobs:
        if states[job.label][0] == "done":
            progress.job_end(job, "finished before; kept")
    todo = [job for job in jobs if states[job.label][0] != "done"]
    try:
        if parallel > 1 and len(todo) > 1:
            _run_in_processes(todo, states, parallel, progress)
        else:
            for job in todo:
                _run_here(job, states[job.label], progress)
    except TrainingInterrupted:
        raise TrainingInterrupted(
            f"compare interrupted; finished runs and the checkpoints of the others are kept in {plan.out}. "
            "Run the same command again to continue"
        ) from None
    return jobs, measured


# -- the compare folder --------------------------------------------------------------------------------------------


def _check_folder(plan: Plan) -> tuple[dict[str, Any], Measured] | None:
    """The record of an earlier start of this same compare and the costs it measured, None for a new one; refuses
    anything else."""
    out = plan.out
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file, not a compare folder; choose another --out")
    plan_file = out / PLAN_FILE
    if not plan_file.is_file():
        if out.is_dir() and any(out.iterdir()):
            raise ConfigError(f"{out} exists, is not empty and holds no compare ({PLAN_FILE}); choose another --out")
        return None
    try:
        recorded = json.loads(plan_file.read_text())
        arms = recorded["arms"]
    except (ValueError, KeyError, TypeError, OSError):
        raise ConfigError(f"{plan_file} is not a gankit compare record; choose another --out") from None
    changed = _first_difference(arms, plan.recorded())
    if changed is not None:
        raise ConfigError(
            f"{out} holds a compare of other arms ({changed}); to continue it give its settings (a default of "
            "gankit train may have changed since), or choose another --out to compare these"
        )
    try:
        costs = recorded["costs"]
        return recorded, Measured(
            {name: Cost(**cost) for name, cost in costs["arms"].items()}, int(costs["threads"]), str(costs["device"])
        )
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{plan_file} is damaged (its costs do not read); choose another --out") from None


def _first_difference(was: Mapping[str, Any], now: Mapping[str, Any]) -> str | None:
    """The first way the recorded arms ``was`` differ from the arms ``now``; None when they are the same compare.

    A setting added to ``TrainConfig`` after the compare was recorded is no difference while it keeps its default,
    which is what those runs trained with.
    """
    if list(was) != list(now):
        return f"arms {', '.join(was)} there, {', '.join(now)} here"
    defaults = build_config({}).model_dump(mode="json")
    for name in now:
        for key in sorted(set(was[name]) | set(now[name])):
            if key not in was[name] and key in defaults and now[name][key] == defaults[key]:
                continue
            if was[name].get(key) != now[name].get(key):
                return f"arm {name!r}: {key} was {json.dumps(was[name].get(key))}, now {json.dumps(now[name].get(key))}"
    return None


def _measure(plan: Plan, rounds: int, progress: CompareProgress) -> Measured:
    import torch

    configs = {name: config.model_copy(update={"seed": plan.seeds[0]}) for name, config in plan.configs.items()}
    data = load_data(configs[plan.baseline])
    costs = measure_costs(configs, data, rounds=rounds, block=COST_BLOCK, on_round=progress.costs)
    device = {str(resolve_device(config.device)) for config in configs.values()}
    return Measured(costs, torch.get_num_threads(), ",".join(sorted(device)))


def _record(plan: Plan, measured: Measured, *, earlier: dict[str, Any] | None) -> None:
    """Write ``compare.json``: a new compare's arms and costs, or new costs into the ``earlier`` record there."""
    try:
        plan.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {plan.out}: {exc.strerror}; choose another --out") from None
    costs = {
        "block": COST_BLOCK,
        "threads": measured.threads,
        "device": measured.device,
        "arms": {name: cost.as_json() for name, cost in measured.costs.items()},
    }
    if earlier is not None:
        record = {**earlier, "costs": costs}
    else:
        first = {"first_seeds": list(plan.seeds), "first_budget": plan.budget.describe()}
        record = {"arms": plan.recorded(), "costs": costs, **first}
    atomic_write_bytes(plan.out / PLAN_FILE, (json.dumps(record, indent=1) + "\n").encode())  # from now on resumable


def _finished(out: Path) -> dict[str, int]:
    """Run folder name -> the steps it had when its training returned, as this compare recorded it."""
    try:
        finished = json.loads((out / FINISHED_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return finished if isinstance(finished, dict) else {}


def _mark_finished(job: Job) -> None:
    """Record that ``job``'s training returned: from now on it is kept as it is. (Its files alone cannot say: a
    kill after the export but before the last plot leaves a run that looks finished.)"""
    out = job.run_dir.parent.parent
    finished = {**_finished(out), job.run_dir.name: job.total_steps}
    atomic_write_bytes(out / FINISHED_FILE, (json.dumps(finished, indent=1) + "\n").encode())


def _state(job: Job, finished: Mapping[str, int]) -> tuple[str, int]:
    """``("done" | "resume" | "new", steps done)`` of a run folder."""
    folder = RunFolder(job.run_dir)
    if not folder.config_path.is_file():
        return "new", 0
    rows = read_metrics_log(folder.metrics_path)
    step = max((int(row["step"]) for row in rows), default=0)
    if step > job.total_steps:
        raise ConfigError(
            f"{job.run_dir} trained {step} steps, past this compare's {job.total_steps}; a smaller budget needs "
            "another --out"
        )
    if step == job.total_steps and finished.get(job.run_dir.name) == step:
        return "done", step
    return "resume", step


# -- the runs --------------------------------------------------------------------------------------------------------


def _train(job: Job, state: str, reporter: Any) -> float:
    """Train one run (fresh or resumed, the recorded config checked first); the seconds it took."""
    started = time.perf_counter()
    if state == "resume":
        recorded = RunFolder(job.run_dir).read_config()
        given = job.config.model_dump(exclude_none=True)
        config = resume_config(recorded, given, out=job.run_dir)
        train(config, reporter=reporter, resume=True)
    else:
        train(job.config, reporter=reporter)
    return time.perf_counter() - started


def _done_line(job: Job, seconds: float) -> str:
    rows = read_metrics_log(RunFolder(job.run_dir).metrics_path)
    scores = [row for row in rows if "eval/frechet_distance" in row]
    last = f", FD {scores[-1]['eval/frechet_distance']:.1f}" if scores else ""
    minutes, secs = divmod(round(seconds), 60)
    return f"done in {minutes}:{secs:02d}{last}"


def _run_here(job: Job, state: tuple[str, int], progress: CompareProgress) -> None:
    progress.job_start(job, state[1])
    seconds = _train(job, state[0], JobReporter(progress, job))
    _mark_finished(job)
    progress.job_end(job, _done_line(job, seconds))


def _run_in_processes(
    jobs: Sequence[Job], states: Mapping[str, tuple[str, int]], parallel: int, progress: CompareProgress
) -> None:
    """Up to ``parallel`` runs at once, each in a process of its own with its share of the threads."""
    import torch

    context = multiprocessing.get_context("spawn")
    threads = max(1, torch.get_num_threads() // parallel)
    pending = list(jobs)
    running: dict[str, tuple[Job, Any, Any, float]] = {}
    try:
        while pending or running:
            while pending and len(running) < parallel:
                job = pending.pop(0)
                receiver, sender = context.Pipe(duplex=False)
                process = context.Process(
                    target=_child, args=(job, states[job.label][0], threads, os.getpid(), sender), daemon=False
                )
                process.start()
                sender.close()
                running[job.label] = (job, process, receiver, time.perf_counter())
                progress.job_start(job, states[job.label][1])
            time.sleep(0.5)
            for label, (job, process, receiver, started) in list(running.items()):
                progress.job_step(job, _last_step(job))
                if process.is_alive():
                    continue
                process.join()
                del running[label]
                failure = _received(receiver)
                if process.exitcode != 0 or failure is not None:
                    kind, message = failure or ("GankitError", f"exited with code {process.exitcode}")
                    error = TrainingInterrupted if kind == "TrainingInterrupted" else GankitError
                    raise error(f"{job.label}: {message}")
                _mark_finished(job)
                progress.job_end(job, _done_line(job, time.perf_counter() - started))
    finally:
        _stop(running.values())


def _received(receiver: Any) -> tuple[str, str] | None:
    """What a finished child sent: ``(error type, message)``, or None when it closed the pipe with nothing to say."""
    try:
        return receiver.recv() if receiver.poll() else None
    except EOFError:
        return None
    finally:
        receiver.close()


def _stop(running: Any) -> None:
    """Ask each run still going to stop at its next log point (it writes a checkpoint), then wait for it."""
    for _, process, _, _ in running:
        if process.is_alive() and process.pid is not None:
            os.kill(process.pid, signal.SIGTERM)
    for _, process, _, _ in running:
        process.join(timeout=300)
        if process.is_alive():
            process.kill()
            process.join()


def _last_step(job: Job) -> int:
    try:
        rows = read_metrics_log(RunFolder(job.run_dir).metrics_path)
    except GankitError:
        return 0
    return max((int(row["step"]) for row in rows), default=0)


def _child(job: Job, state: str, threads: int, parent: int, sender: Any) -> None:
    """A run in a process of its own: its own session (a terminal's Ctrl-C reaches it through the parent, once),
    stopping itself cleanly when the parent is gone; a failure goes back to the parent as one line."""
    import torch

    os.setsid()
    torch.set_num_threads(threads)

    def orphaned() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=orphaned, daemon=True).start()
    try:
        _train(job, state, None)
    except GankitError as exc:
        sender.send((type(exc).__name__, str(exc)))
        raise SystemExit(exc.exit_code) from None
    except BaseException as exc:
        sender.send(("GankitError", f"failed: {type(exc).__name__}: {exc}"))
        raise
    finally:
        sender.close()
