"""The files layer: atomic writes, safetensors I/O with one-line errors, text from files made safe to print,
the checkpoint format, the metrics log, and the helpers dataset plugins use (cache folder, hash-checked downloads,
IDX files).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gankit import lazy_exports

if TYPE_CHECKING:
    from gankit.files._atomic import NotRegularFile as NotRegularFile
    from gankit.files._atomic import append_regular as append_regular
    from gankit.files._atomic import atomic_output as atomic_output
    from gankit.files._atomic import atomic_write_bytes as atomic_write_bytes
    from gankit.files._atomic import open_regular as open_regular
    from gankit.files._atomic import read_regular as read_regular
    from gankit.files._atomic import remove_stale_temporaries as remove_stale_temporaries
    from gankit.files._atomic import sha256_file as sha256_file
    from gankit.files._checkpoint import CHECKPOINT_FORMAT as CHECKPOINT_FORMAT
    from gankit.files._checkpoint import CONTENT_HASH as CONTENT_HASH
    from gankit.files._checkpoint import RESERVED_METADATA as RESERVED_METADATA
    from gankit.files._checkpoint import content_hash as content_hash
    from gankit.files._checkpoint import digest_tensors as digest_tensors
    from gankit.files._checkpoint import flatten_state as flatten_state
    from gankit.files._checkpoint import load_checkpoint as load_checkpoint
    from gankit.files._checkpoint import read_checkpoint_metadata as read_checkpoint_metadata
    from gankit.files._checkpoint import save_checkpoint as save_checkpoint
    from gankit.files._checkpoint import unflatten_state as unflatten_state
    from gankit.files._datasets import cache_dir as cache_dir
    from gankit.files._datasets import check_sha256 as check_sha256
    from gankit.files._datasets import fetch_pypi_file as fetch_pypi_file
    from gankit.files._datasets import load_checked_pickle as load_checked_pickle
    from gankit.files._datasets import read_idx as read_idx
    from gankit.files._metrics_log import ENGINE_FIELDS as ENGINE_FIELDS
    from gankit.files._metrics_log import STAT_NAMES as STAT_NAMES
    from gankit.files._metrics_log import loss_metric_names as loss_metric_names
    from gankit.files._metrics_log import read_metrics_log as read_metrics_log
    from gankit.files._tensorfile import SafetensorsHeader as SafetensorsHeader
    from gankit.files._tensorfile import TensorInfo as TensorInfo
    from gankit.files._tensorfile import atomic_write as atomic_write
    from gankit.files._tensorfile import check_format as check_format
    from gankit.files._tensorfile import checked_metadata as checked_metadata
    from gankit.files._tensorfile import dtype_name as dtype_name
    from gankit.files._tensorfile import failure as failure
    from gankit.files._tensorfile import read_safetensors_header as read_safetensors_header
    from gankit.files._tensorfile import standalone_tensors as standalone_tensors
    from gankit.files._text import GENERIC_INSTALL as GENERIC_INSTALL
    from gankit.files._text import install_hint as install_hint
    from gankit.files._text import one_line as one_line
    from gankit.files._text import printable as printable
    from gankit.files._text import rich_safe as rich_safe
    from gankit.files._text import split_key_value as split_key_value

__all__, __getattr__, __dir__ = lazy_exports(__name__)
