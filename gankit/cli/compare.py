"""``gankit compare``: train two or more arms with the same seeds and budget, and say which is better, with error
bars.

An arm is a set of ``gankit train`` options. They are parsed by ``gankit train``'s own command (its click parser and
``config_values``), so an arm means exactly what the same options mean to ``gankit train``; any option this command
does not know is a ``gankit train`` option shared by every arm. The arms go down to ``gankit.compare`` as typed
values: everything else happens there.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gankit.errors import ConfigError
from gankit.run import merge_config, read_toml, sigterm_interrupts

if TYPE_CHECKING:
    from gankit.compare import Arm

NOT_FOR_ARMS = {"resume_dir": "--resume", "nproc": "--nproc", "overwrite": "--overwrite", "quiet": "--quiet"}
"""``gankit train`` parameters that are not settings of a run: an arm may not give them."""


def train_values(args: list[str], *, where: str) -> dict[str, Any]:
    """``TrainConfig`` values of ``gankit train ARGS`` (``--config`` file, then flags), ``None`` where not given.

    ``where`` names the arm (or the shared options) in the one-line error for options that do not parse.
    """
    from gankit.cli.train import command as train
    from gankit.cli.train import config_values, flag_names

    try:
        context = train.make_context("train", list(args))
    except click.exceptions.Exit:
        raise ConfigError(f"--help in {where} is not a training option; see gankit train --help") from None
    except click.ClickException as exc:
        raise ConfigError(f"cannot read {where} as gankit train options: {exc.format_message()}") from None
    params = dict(context.params)
    names = flag_names(train)
    for name, flag in NOT_FOR_ARMS.items():
        if params.pop(name, None) not in (None, False):
            raise ConfigError(f"{flag} in {where} is not a setting of a run; drop it")
    from gankit.compare import SET_BY_COMPARE

    for name, why in SET_BY_COMPARE.items():
        if params.get(name) is not None:
            raise ConfigError(f"{names.get(name, name)} in {where}: {why}")
    config_file = params.pop("config_file", None)
    return merge_config(read_toml(config_file) if config_file else {}, config_values(params))


def parse_arm(text: str, shared: dict[str, Any]) -> Arm:
    """``"NAME: OPTIONS"`` -> an ``Arm`` with the shared values and its own on top."""
    from gankit.compare import Arm

    name, colon, options = text.partition(":")
    if not colon or not name.strip():
        raise ConfigError(f"--arm {text!r} does not parse: write it as 'NAME: OPTIONS', e.g. 'minimax: --loss minimax'")
    name = name.strip()
    try:
        args = shlex.split(options)
    except ValueError as exc:
        raise ConfigError(f"--arm {text!r} does not parse: {exc}") from None
    return Arm(name, merge_config(shared, train_values(args, where=f"arm {name!r}")))


def arms_from_file(path: Path, shared: dict[str, Any]) -> list[Arm]:
    """A TOML file's arms: each table is one (its keys are ``gankit train`` config keys); plain keys at the top are
    shared by every arm in the file, under the command line's shared options."""
    from gankit.compare import Arm

    if not path.is_file():
        raise ConfigError(f"arms file {path} does not exist; check the path given to --arms")
    values = read_toml(path)
    common = {key: value for key, value in values.items() if not isinstance(value, dict)}
    tables = {key: value for key, value in values.items() if isinstance(value, dict)}
    if not tables:
        raise ConfigError(f'{path} holds no arm: write one table per arm, e.g. [minimax] with loss = "minimax"')
    base = merge_config(common, shared)
    return [Arm(name, merge_config(base, table)) for name, table in tables.items()]


@click.command(
    "compare",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    options_metavar="[OPTIONS] [TRAIN OPTIONS]",
)
@click.option(
    "--arm",
    "arm_texts",
    multiple=True,
    metavar="'NAME: OPTIONS'",
    help="An arm: a name and gankit train options, e.g. 'minimax: --loss minimax' (repeatable; the first is the "
    "baseline).",
)
@click.option(
    "--arms",
    "arms_file",
    type=click.Path(path_type=Path),
    help="TOML file of arms, one table each (before the --arm ones); its top-level keys apply to all of them.",
)
@click.option(
    "--seeds", default="0,1,2", metavar="LIST", show_default=True, help="Seeds every arm runs with: 0,1,2 or 0-4."
)
@click.option("--epochs", type=int, help="Budget: this many epochs per run (compared at equal steps).")
@click.option("--steps", type=int, help="Budget: this many steps per run (compared at equal steps).")
@click.option("--cpu-minutes", type=float, help="Budget: this much CPU time per run, at the arm's measured cost.")
@click.option("--gpu-minutes", type=float, help="Budget: this much CUDA time per run, at the arm's measured cost.")
@click.option("--evals", type=int, default=2, show_default=True, help="Evaluations per epoch (and one at the end).")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Compare folder (default: runs/compare-A-vs-B); the same command again continues it.",
)
@click.option(
    "--parallel",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Runs trained at once, each in its own process with its share of the threads.",
)
@click.option(
    "--cost-rounds",
    type=click.IntRange(1, 100),
    default=5,
    show_default=True,
    help="Rounds of interleaved 10-step blocks per arm when measuring the cost of a step.",
)
@click.option(
    "--remeasure-costs",
    is_flag=True,
    help="Measure the costs again for a compare at equal steps, keeping its runs (after a busy machine).",
)
@click.option("--quiet", is_flag=True, help="No progress: neither the bar nor the plain lines; the tables still print.")
@click.pass_context
@sigterm_interrupts  # SIGTERM outside the training loop ends the command as Ctrl-C does (exit 130)
def command(
    context: click.Context,
    arm_texts: tuple[str, ...],
    arms_file: Path | None,
    seeds: str,
    epochs: int | None,
    steps: int | None,
    cpu_minutes: float | None,
    gpu_minutes: float | None,
    evals: int,
    out: Path | None,
    parallel: int,
    cost_rounds: int,
    remeasure_costs: bool,
    quiet: bool,
) -> None:
    """Train each arm with the same seeds and budget, and compare their scores with 95% intervals.

    Any other option is a gankit train option shared by every arm (an arm's own options win).

    Example: gankit compare --arm "nonsat: --loss nonsat" --arm "minimax: --loss minimax" --seeds 0,1 --epochs 1
    """
    from gankit.compare import Budget, BudgetUnit, parse_seeds, plan_compare

    given: dict[BudgetUnit, float | None] = {
        "epochs": epochs,
        "steps": steps,
        "cpu_minutes": cpu_minutes,
        "gpu_minutes": gpu_minutes,
    }
    budgets = [(unit, amount) for unit, amount in given.items() if amount is not None]
    if len(budgets) != 1:
        flags = "--epochs, --steps, --cpu-minutes or --gpu-minutes"
        raise ConfigError(f"give one budget: {flags}" + (f", not {len(budgets)}" if budgets else ""))
    ((unit, amount),) = budgets
    shared = train_values(context.args, where="the shared train options")
    arms = arms_from_file(arms_file, shared) if arms_file else []
    arms += [parse_arm(text, shared) for text in arm_texts]
    plan = plan_compare(
        arms,
        seeds=parse_seeds(seeds),
        budget=Budget(unit, float(amount)),
        evals=evals,
        out=out,
    )

    from gankit.compare import PlainProgress, RichProgress, SilentProgress, run_compare, tables, write_report

    progress = SilentProgress() if quiet else RichProgress() if sys.stderr.isatty() else PlainProgress()
    try:
        jobs, measured = run_compare(
            plan, parallel=parallel, cost_rounds=cost_rounds, remeasure=remeasure_costs, progress=progress
        )
    finally:
        progress.close()
    results = write_report(plan, jobs, measured)
    click.echo(tables(results))
    click.echo(f"results: {plan.out / 'results.md'} (and results.json, scores.png, samples/)")
