"""``gankit train --nproc N``: check the run in the launching process, start torchrun's agent, report failures once.

Every check a process would make at start (config, plugin names and options, the data, the models' fit and size on
the meta device, devices) runs here first, so bad input is one line before any process exists. torchrun's agent
then runs in this process; each training process that fails with a ``GankitError`` leaves its message in a folder
the launcher gives it (``ERRORS_ENV``) instead of printing it, and the launcher raises the first one, so the user
reads one line whatever the number of processes, with the error's own exit code, and never torchrun's
``ChildFailedError`` report.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

from gankit.errors import ConfigError, GankitError
from gankit.files import printable
from gankit.run._config import TrainConfig

ERRORS_ENV = "GANKIT_LAUNCH_ERRORS"
"""The folder where each process launched by ``launch`` writes ``rank-<RANK>.json`` when it fails."""

TORCHRUN_LOGGERS = ("torch.distributed.run", "torch.distributed.launcher", "torch.distributed.elastic")
"""torchrun's own loggers, silenced: its warnings and its failure report are replaced by gankit's one line."""


class LaunchedRunFailed(GankitError):
    """A process started by ``--nproc`` failed; the message is its own one line, the exit code its own."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def check_launch(config: TrainConfig, nproc: int) -> None:
    """What the ``nproc`` processes would refuse at start, checked here: devices, the global batch, the data, and
    the models built on the meta device, their fit and size."""
    from gankit.run._assembly import check_assembly, load_data
    from gankit.run._distributed import check_processes
    from gankit.run._precision import resolve_device, resolve_precision

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("--nproc cannot be used inside torchrun; torchrun already started the processes")
    device = resolve_device(config.device)
    resolve_precision(config.amp, device)
    if device.type == "cuda":
        import torch

        if torch.cuda.device_count() < nproc:
            raise ConfigError(
                f"--nproc {nproc} needs {nproc} GPUs but {torch.cuda.device_count()} are visible; "
                "use as many processes as GPUs"
            )
    check_processes(config.batch_size, config.sync_batchnorm, processes=nproc, device=device)
    check_assembly(config, load_data(config), processes=nproc)


def launch(nproc: int, arguments: list[str]) -> NoReturn:
    """Run ``python -m gankit ARGUMENTS`` in ``nproc`` processes under torchrun's agent, in this process.

    Exits 0 when every process did; raises the first process's ``GankitError`` as ``LaunchedRunFailed``; exits
    with the failing process's code (after one line) otherwise.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    for name in [*TORCHRUN_LOGGERS, *logging.root.manager.loggerDict]:  # several set their own level
        if name.startswith(TORCHRUN_LOGGERS):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    torchrun = ["--standalone", f"--nproc-per-node={nproc}", "-m", "gankit", *arguments]
    with tempfile.TemporaryDirectory(prefix="gankit-launch-") as errors:
        os.environ[ERRORS_ENV] = errors
        try:
            run(get_args_parser().parse_args(torchrun))  # type: ignore[no-untyped-call]
        except ChildFailedError as exc:
            codes = {rank: failure.exitcode for rank, failure in exc.failures.items()}
            _raise_reported(Path(errors))
            rank, code = min(codes.items())
            _exit_unreported(rank, code, nproc)
        except (SignalException, KeyboardInterrupt):
            _raise_reported(Path(errors))
            raise KeyboardInterrupt from None
        finally:
            os.environ.pop(ERRORS_ENV, None)
    raise SystemExit(0)


def _raise_reported(folder: Path) -> None:
    """Raise the error of the lowest rank that wrote one; return if none did."""
    for path in sorted(folder.glob("rank-*.json"), key=lambda p: int(p.stem.removeprefix("rank-") or 0)):
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
            message, code = str(report["message"]), int(report["exit_code"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        raise LaunchedRunFailed(message, code)


def _exit_unreported(rank: int, code: int, nproc: int) -> NoReturn:
    """A process ended without a gankit error (a crash shows its own traceback above, a signal does not)."""
    if code < 0:
        try:
            how = f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
    else:
        how = f"exited with code {code}; its output above says why"
    print(f"Error: training process {rank} of {nproc} {how}", file=sys.stderr)
    raise SystemExit(code if code > 0 else 128 - code)


def report_to_launcher(error: GankitError) -> None:
    """In a process started by ``launch``: leave ``error`` for the launcher to print once, and exit quietly with
    its code. Anywhere else: return, so the error is printed as usual."""
    folder, rank = os.environ.get(ERRORS_ENV), os.environ.get("RANK")
    if not folder or rank is None or not Path(folder).is_dir():
        return
    report = {"message": printable(error, limit=None), "exit_code": error.exit_code}
    (Path(folder) / f"rank-{int(rank)}.json").write_text(json.dumps(report), encoding="utf-8")
    raise SystemExit(error.exit_code)
