"""The generator export: the safetensors format and its metadata, the model card that says where it came
from, and the ONNX route (docs/export.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gankit import lazy_exports

if TYPE_CHECKING:
    from gankit.export._card import CARD_FILE as CARD_FILE
    from gankit.export._card import CARD_KEY as CARD_KEY
    from gankit.export._card import CARD_KEYS as CARD_KEYS
    from gankit.export._card import ModelCard as ModelCard
    from gankit.export._card import at_step as at_step
    from gankit.export._card import card_contradiction as card_contradiction
    from gankit.export._card import card_problem as card_problem
    from gankit.export._card import complete as complete
    from gankit.export._card import parse_user_fields as parse_user_fields
    from gankit.export._card import run_card as run_card
    from gankit.export._card import with_user_fields as with_user_fields
    from gankit.export._format import METADATA_KEYS as METADATA_KEYS
    from gankit.export._format import ExportMetadata as ExportMetadata
    from gankit.export._format import carried_metadata as carried_metadata
    from gankit.export._format import export_metadata as export_metadata
    from gankit.export._format import load_generator as load_generator
    from gankit.export._format import read_export_metadata as read_export_metadata
    from gankit.export._format import save_generator as save_generator
    from gankit.export._onnx import IMAGES as IMAGES
    from gankit.export._onnx import LABELS as LABELS
    from gankit.export._onnx import LATENT as LATENT
    from gankit.export._onnx import export_onnx as export_onnx
    from gankit.export._onnx import read_onnx_export_metadata as read_onnx_export_metadata
    from gankit.export._onnx import read_onnx_metadata as read_onnx_metadata

__all__, __getattr__, __dir__ = lazy_exports(__name__)
