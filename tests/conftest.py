"""Test-wide settings: one thread per process.

The tests run many tiny models; with several threads per process they spend their time synchronising threads,
especially on a shared machine. Subprocesses started by tests inherit OMP_NUM_THREADS.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

torch.set_num_threads(1)
