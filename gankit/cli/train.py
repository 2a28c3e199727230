"""``gankit train``: assemble any generator, discriminator, loss and dataset by name and train them.

Help lines come from ``TrainConfig``'s field descriptions, so the flags and the config file never drift apart.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from gankit.cli.common import FC, OPTION_FLAGS, plugin_option_flags
from gankit.config import RESUMABLE, TrainConfig, build_config, merge_config, parse_key_values, read_toml, resume_config
from gankit.errors import ConfigError


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
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--nproc",
    type=click.IntRange(1, 1024),
    default=None,
    help="Launch this many processes on this machine through torchrun (DDP; gloo on CPU, NCCL on CUDA).",
)
def command(
    config_file: Path | None, resume_dir: Path | None, overwrite: bool, quiet: bool, nproc: int | None, **flags: Any
) -> None:
    """Train a GAN from plugins chosen by name; flags override --config.

    Example: gankit train --gen dcgan --loss nonsat --epochs 1
    """
    fold_old_spellings(flags)
    for kind, (flag, _) in OPTION_FLAGS.items():
        field = f"{kind}_options"
        flags[field] = parse_key_values(flags[field], flag=flag) if flags[field] else None
    if flags["betas"] == ():
        flags["betas"] = None
    if resume_dir is not None:
        from gankit.run_folder import RunFolder

        if config_file is not None:
            raise ConfigError("--resume takes the configuration from the run folder; drop --config")
        config = resume_config(RunFolder(resume_dir).read_config(), flags, out=resume_dir)
    else:
        config = build_config(merge_config(read_toml(config_file) if config_file else {}, flags))
    if nproc is not None and nproc > 1:
        check_global_batch(config.batch_size, nproc)  # here, before any process is started or anything built
        launch_torchrun(nproc)

    from gankit.reporting import RichReporter
    from gankit.training import train

    reporter = None if quiet else RichReporter()
    try:
        train(config, reporter=reporter, overwrite=overwrite, resume=resume_dir is not None)
    finally:
        if reporter is not None:
            reporter.close()


def describe_resume(command: click.Command) -> None:
    """Complete ``--resume``'s help with the flags of the ``RESUMABLE`` settings, as the command spells them."""
    options = {param.name: param for param in command.params if isinstance(param, click.Option)}
    flags = ", ".join(options[name].opts[0] for name in RESUMABLE)
    resume = options["resume_dir"]
    unbroken = textwrap.fill(f"{flags}.", width=44, break_on_hyphens=False)  # \b: click keeps these lines as they are
    resume.help = f"{resume.help} Only these flags may be given with it:\n\n\b\n{unbroken}"


describe_resume(command)


def check_global_batch(batch_size: int, nproc: int) -> None:
    """ConfigError unless the global batch splits evenly over ``nproc`` processes (the Trainer checks it again)."""
    if batch_size % nproc:
        raise ConfigError(
            f"--batch-size {batch_size} is the global batch and must divide evenly over {nproc} processes"
        )


def launch_torchrun(nproc: int) -> None:
    """Re-run this very command under ``torchrun --nproc-per-node N -m gankit``, without ``--nproc``."""
    import os
    import subprocess
    import sys

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("--nproc cannot be used inside torchrun; torchrun already started the processes")
    args = sys.argv[1:]
    index = next(i for i, arg in enumerate(args) if arg == "--nproc" or arg.startswith("--nproc="))
    del args[index : index + (1 if "=" in args[index] else 2)]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    raise SystemExit(subprocess.call([*command, "-m", "gankit", *args]))
