"""``gankit train``: assemble any generator, discriminator, loss and dataset by name and train them.

Help lines come from ``TrainConfig``'s field descriptions, so the flags and the config file never drift apart.
"""

from __future__ import annotations

import errno
import logging
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from gankit.cli.common import FC, OPTION_FLAGS, plugin_option_flags
from gankit.errors import FileFormatError
from gankit.run import (
    RESUMABLE,
    TrainConfig,
    build_config,
    merge_config,
    parse_key_values,
    read_toml,
    sigterm_interrupts,
)


def config_option(field: str, *declarations: str, **kwargs: Any) -> Callable[[FC], FC]:
    """A flag for a ``TrainConfig`` field; unset flags stay None so the file or the default applies."""
    info = TrainConfig.model_fields[field]
    default = info.get_default(call_default_factory=True)
    shown = f" [default: {default}]" if default not in (None, {}) else ""
    return click.option(*declarations, field, default=None, help=f"{info.description}{shown}", **kwargs)


OLD_SPELLINGS = {"--latent-size": "latent_dim", "--samples": "sample_count"}
"""Flags renamed after their config key, still accepted but no longer shown: old spelling -> ``TrainConfig`` field."""


def old_spellings(function: FC) -> FC:
    """The hidden ``OLD_SPELLINGS`` (integer flags), read as ``old_<field>``; ``fold_old_spellings`` merges them."""
    for flag, field in OLD_SPELLINGS.items():
        function = click.option(flag, f"old_{field}", type=int, default=None, hidden=True)(function)
    return function


def fold_old_spellings(flags: dict[str, Any]) -> None:
    """Give each field its old spelling's value, unless the new flag was given too (then the new one wins)."""
    for field in OLD_SPELLINGS.values():
        old = flags.pop(f"old_{field}")
        if flags[field] is None:
            flags[field] = old


@click.command("train")
@config_option("generator", "--gen", metavar="NAME")
@config_option("discriminator", "--disc", metavar="NAME")
@config_option("loss", "--loss", metavar="NAME")
@config_option("dataset", "--dataset", metavar="NAME")
@plugin_option_flags
@config_option("epochs", "--epochs", type=int)
@config_option("max_steps", "--max-steps", type=int)
@config_option("batch_size", "--batch-size", type=int)
@config_option("lr_g", "--lr-g", type=float)
@config_option("lr_d", "--lr-d", type=float)
@config_option("betas", "--betas", type=float, nargs=2, metavar="B1 B2")
@config_option("d_steps", "--d-steps", type=int)
@config_option("augment", "--augment", metavar="POLICY")
@config_option("lr_schedule", "--lr-schedule", type=click.Choice(["constant", "linear", "cosine"]))
@config_option("lr_warmup", "--lr-warmup", type=int)
@config_option("latent_dim", "--latent-dim", type=int)
@config_option("image_size", "--image-size", type=int)
@config_option("num_classes", "--num-classes", type=int)
@config_option("seed", "--seed", type=int)
@config_option("device", "--device", type=click.Choice(["auto", "cpu", "cuda"]))
@config_option("amp", "--amp", type=click.Choice(["auto", "off", "bf16", "fp16"]))
@config_option("channels_last", "--channels-last", type=click.Choice(["auto", "on", "off"]))
@click.option(
    "--sync-batchnorm/--no-sync-batchnorm",
    "sync_batchnorm",
    default=None,
    help=TrainConfig.model_fields["sync_batchnorm"].description,
)
@click.option("--compile/--no-compile", "compile", default=None, help=TrainConfig.model_fields["compile"].description)
@config_option("out", "--out", type=click.Path(path_type=Path))
@config_option("log_every", "--log-every", type=int)
@config_option("sample_count", "--sample-count", type=int)
@config_option("sample_every", "--sample-every", type=int)
@click.option(
    "--tracker",
    "trackers",
    multiple=True,
    metavar="NAME",
    help="Also log to this experiment tracker, e.g. tensorboard (repeatable; `gankit plugins --kind tracker`).",
)
@click.option("--ema/--no-ema", "ema", default=None, help=TrainConfig.model_fields["ema"].description)
@config_option("ema_kimg", "--ema-kimg", type=float)
@config_option("eval_every", "--eval-every", type=int)
@config_option("eval_samples", "--eval-samples", type=int)
@config_option("checkpoint_every", "--checkpoint-every", type=int)
@config_option("keep_checkpoints", "--keep-checkpoints", type=int)
@config_option("max_skipped_steps", "--max-skipped-steps", type=int)
@old_spellings
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(path_type=Path),
    help="Continue the run in this folder from its latest checkpoint.",  # completed below from RESUMABLE
)
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="TOML file of these options.")
@click.option("--overwrite", is_flag=True, help="Write into an existing run folder, replacing gankit's files there.")
@click.option("--quiet", is_flag=True, help="No progress: neither the bar nor, off a terminal, the plain lines.")
@click.option(
    "--nproc",
    type=click.IntRange(1, 1024),
    default=None,
    help="Launch this many processes on this machine through torchrun (DDP; gloo on CPU, NCCL on CUDA).",
)
@sigterm_interrupts  # SIGTERM during start-up too exits 130, as Ctrl-C does
def command(
    config_file: Path | None, resume_dir: Path | None, overwrite: bool, quiet: bool, nproc: int | None, **flags: Any
) -> None:
    """Train a GAN from plugins chosen by name; flags override --config.

    Example: gankit train --gen dcgan --loss nonsat --epochs 1
    """
    flags = config_values(flags)
    file_values = read_toml(config_file) if config_file else {}
    if resume_dir is not None:
        from gankit.run import RunFolder, resume_config

        given, sources = merge_config(file_values, flags), given_by(file_values, flags, config_file)
        config = resume_config(RunFolder(resume_dir).read_config(), given, out=resume_dir, sources=sources)
    else:
        config = build_config(merge_config(file_values, flags))
    if nproc is not None and nproc > 1:
        from gankit.run import check_launch

        check_launch(config, nproc)
        launch_torchrun(nproc)

    from gankit.run import PlainReporter, RichReporter, train

    reporter = None if quiet else RichReporter() if sys.stdout.isatty() else PlainReporter()
    if quiet:  # the data's and the classifier's lines too; warnings still show
        from gankit.cli import show_messages

        show_messages(logging.WARNING)
    try:
        train(config, reporter=reporter, overwrite=overwrite, resume=resume_dir is not None)
    except OSError as exc:  # a write gankit does not wrap itself (a plugin's, a tracker's) on a full disk
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise FileFormatError(f"cannot write {exc.filename or 'a file'}: {exc.strerror}; free some space") from None
    finally:
        if reporter is not None:
            reporter.close()


def config_values(flags: dict[str, Any]) -> dict[str, Any]:
    """The parsed flags as ``TrainConfig`` values, ``None`` where not given (so the file or the default applies).

    ``gankit compare`` turns each arm's options into values through this too, so an arm means what it means here.
    """
    flags = dict(flags)
    fold_old_spellings(flags)
    for kind, (flag, _) in OPTION_FLAGS.items():
        field = f"{kind}_options"
        flags[field] = parse_key_values(flags[field], flag=flag) if flags[field] else None
    for field in ("betas", "trackers"):  # an unset nargs or multiple flag is (), which must not override
        if flags[field] == ():
            flags[field] = None
    if flags["trackers"] is not None:
        flags["trackers"] = list(flags["trackers"])
    return flags


def flag_names(train: click.Command) -> dict[str, str]:
    """``TrainConfig`` field (or other parameter) -> the flag ``train`` spells it with: ``seed`` -> ``--seed``."""
    return {param.name: param.opts[0] for param in train.params if isinstance(param, click.Option) and param.name}


def given_by(file_values: dict[str, Any], flags: dict[str, Any], config_file: Path | None) -> dict[str, str]:
    """How each setting given to a resume was given, for its refusal: a flag, or the ``--config`` file.

    Option tables have an entry per option too (``generator_options.width``), since the two merge key by key.
    """
    names = flag_names(command)
    negations = {
        param.name: param.secondary_opts[0]
        for param in command.params
        if isinstance(param, click.Option) and param.name and param.secondary_opts
    }  # --ema/--no-ema: a False came from --no-ema
    sources: dict[str, str] = {}
    for key, value in file_values.items():
        sources[key] = f"{key} from {config_file}"
        if isinstance(value, dict):
            sources.update({f"{key}.{option}": f"[{key}] of {config_file}" for option in value})
    for key, value in flags.items():
        if value is not None:
            sources[key] = negations[key] if value is False and key in negations else names.get(key, key)
            if isinstance(value, dict):
                sources.update({f"{key}.{option}": sources[key] for option in value})
    return sources


def describe_resume(command: click.Command) -> None:
    """Complete ``--resume``'s help with the flags of the ``RESUMABLE`` settings, as the command spells them."""
    names = flag_names(command)
    flags = ", ".join(names[name] for name in RESUMABLE)
    resume = command.params[[param.name for param in command.params].index("resume_dir")]
    unbroken = textwrap.fill(f"{flags}.", width=44, break_on_hyphens=False)  # \b: click keeps these lines as they are
    resume.help = (
        f"{resume.help} Other flags, and --config, may repeat the run's values but not change them; these may "
        f"change:\n\n\b\n{unbroken}"
    )


describe_resume(command)


def launch_torchrun(nproc: int) -> None:
    """Re-run this very command as ``torchrun --nproc-per-node N -m gankit ...`` without ``--nproc``; torchrun's
    agent runs in this process (``gankit.run``), so a failure is reported as one line, once."""
    from gankit.run import launch

    args = sys.argv[1:]
    index = next(i for i, arg in enumerate(args) if arg == "--nproc" or arg.startswith("--nproc="))
    del args[index : index + (1 if "=" in args[index] else 2)]
    launch(nproc, args)
