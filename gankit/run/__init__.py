"""Training: the typed config (and what ``--resume`` may change), assembling the plugins, the step, the loop and
its cadence, the run folder with its lock and checkpoints, restore, reporting, trackers, precision, EMA,
distributed processes and the launcher.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gankit import lazy_exports

if TYPE_CHECKING:
    from gankit.run._assembly import Assembly as Assembly
    from gankit.run._assembly import assemble as assemble
    from gankit.run._assembly import load_data as load_data
    from gankit.run._batches import DeviceBatches as DeviceBatches
    from gankit.run._batches import resized_uint8 as resized_uint8
    from gankit.run._card import checkpoint_card as checkpoint_card
    from gankit.run._card import read_run_card as read_run_card
    from gankit.run._card import record_scores as record_scores
    from gankit.run._card import run_export_card as run_export_card
    from gankit.run._config import RESUMABLE as RESUMABLE
    from gankit.run._config import TrainConfig as TrainConfig
    from gankit.run._config import build_config as build_config
    from gankit.run._config import merge_config as merge_config
    from gankit.run._config import parse_key_values as parse_key_values
    from gankit.run._config import read_toml as read_toml
    from gankit.run._config import resume_config as resume_config
    from gankit.run._config import tracker_options_by_name as tracker_options_by_name
    from gankit.run._ema import GeneratorEMA as GeneratorEMA
    from gankit.run._folder import RunFolder as RunFolder
    from gankit.run._health import HealthMonitor as HealthMonitor
    from gankit.run._launch import check_launch as check_launch
    from gankit.run._launch import launch as launch
    from gankit.run._launch import report_to_launcher as report_to_launcher
    from gankit.run._lock import LOCK_NAME as LOCK_NAME
    from gankit.run._lock import RunLock as RunLock
    from gankit.run._lock import check_unlocked as check_unlocked
    from gankit.run._loop import train as train
    from gankit.run._loss_calls import logits_leaving_buffers as logits_leaving_buffers
    from gankit.run._precision import resolve_device as resolve_device
    from gankit.run._precision import resolve_precision as resolve_precision
    from gankit.run._reporting import PlainReporter as PlainReporter
    from gankit.run._reporting import RichReporter as RichReporter
    from gankit.run._reporting import SilentReporter as SilentReporter
    from gankit.run._reporting import warn_on_stderr as warn_on_stderr
    from gankit.run._stopping import sigterm_interrupts as sigterm_interrupts
    from gankit.run._tracking import scalars_of as scalars_of
    from gankit.run._trainer import Trainer as Trainer
    from gankit.run._trainer import make_adam as make_adam
    from gankit.run._trainer import memory_format_for as memory_format_for
    from gankit.run._trainer import seed_everything as seed_everything

__all__, __getattr__, __dir__ = lazy_exports(__name__)
