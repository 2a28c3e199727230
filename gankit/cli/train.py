"""``gankit train``: assemble any generator, discriminator, loss and dataset by name and train them.

Help lines come from ``TrainConfig``'s field descriptions, so the flags and the config file never drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from gankit.config import TrainConfig, build_config, merge_config, parse_key_values, read_toml
from gankit.errors import ConfigError

FC = Callable[..., Any]


def config_option(field: str, *declarations: str, **kwargs: Any) -> Callable[[FC], FC]:
    """A flag for a ``TrainConfig`` field; unset flags stay None so the file or the default applies."""
    info = TrainConfig.model_fields[field]
    default = info.get_default(call_default_factory=True)
    shown = f" [default: {default}]" if default not in (None, {}) else ""
    return click.option(*declarations, field, default=None, help=f"{info.description}{shown}", **kwargs)


OPTION_FLAGS = {
    "generator_options": ("--gen-opt", "generator"),
    "discriminator_options": ("--disc-opt", "discriminator"),
    "loss_options": ("--loss-opt", "loss"),
    "dataset_options": ("--data-opt", "dataset (e.g. root=/path/to/idx/files)"),
}


def plugin_option_flags(function: FC) -> FC:
    """``--gen-opt KEY=VALUE`` and its siblings, validated later against each plugin's own Options model."""
    for field, (flag, what) in reversed(OPTION_FLAGS.items()):
        function = click.option(
            flag, field, multiple=True, metavar="KEY=VALUE", help=f"Set an option of the {what} (repeatable)."
        )(function)
    return function


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
@config_option("latent_dim", "--latent-size", type=int)
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
@config_option("sample_count", "--samples", type=int)
@click.option("--ema/--no-ema", "ema", default=None, help=TrainConfig.model_fields["ema"].description)
@config_option("ema_kimg", "--ema-kimg", type=float)
@config_option("eval_every", "--eval-every", type=int)
@config_option("eval_samples", "--eval-samples", type=int)
@config_option("checkpoint_every", "--checkpoint-every", type=int)
@config_option("keep_checkpoints", "--keep-checkpoints", type=int)
@config_option("max_skipped_steps", "--max-skipped-steps", type=int)
@click.option(
    "--resume",
    "resume_dir",
    type=click.Path(path_type=Path),
    help="Continue the run in this folder from its latest checkpoint (only --epochs/--max-steps may change).",
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
    if nproc is not None and nproc > 1:
        launch_torchrun(nproc)
    for field, (flag, _) in OPTION_FLAGS.items():
        flags[field] = parse_key_values(flags[field], flag=flag) if flags[field] else None
    if flags["betas"] == ():
        flags["betas"] = None
    if resume_dir is not None:
        from gankit.run_folder import RunFolder

        if config_file is not None:
            raise ConfigError("--resume takes the configuration from the run folder; drop --config")
        config = RunFolder(resume_dir).resume_config(flags)
    else:
        config = build_config(merge_config(read_toml(config_file) if config_file else {}, flags))

    from gankit.progress import RichReporter
    from gankit.training import train

    reporter = None if quiet else RichReporter()
    try:
        train(config, reporter=reporter, overwrite=overwrite, resume=resume_dir is not None)
    finally:
        if reporter is not None:
            reporter.close()


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
