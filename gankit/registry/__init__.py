"""Plugins: found through entry points, loaded and checked, described (options and layers), their outputs
checked against the contract before the first step, their failures blamed on them, their memory sized on the meta
device. ``register_plugin`` / ``create_plugin`` / ``list_plugins`` are the API a plugin author meets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gankit import lazy_exports

if TYPE_CHECKING:
    from gankit.registry._blame import failures_reported as failures_reported
    from gankit.registry._blame import graph_owner as graph_owner
    from gankit.registry._blame import plugin_code as plugin_code
    from gankit.registry._contract import check_data as check_data
    from gankit.registry._contract import check_generator as check_generator
    from gankit.registry._contract import check_models as check_models
    from gankit.registry._contract import check_training_batch as check_training_batch
    from gankit.registry._data import load_split as load_split
    from gankit.registry._data import to_unit_range as to_unit_range
    from gankit.registry._describe import DUMMY_BATCH as DUMMY_BATCH
    from gankit.registry._describe import PluginDescription as PluginDescription
    from gankit.registry._describe import describe_options as describe_options
    from gankit.registry._describe import describe_plugin as describe_plugin
    from gankit.registry._entries import same_distribution as same_distribution
    from gankit.registry._registry import KINDS as KINDS
    from gankit.registry._registry import RUNTIME_DISTRIBUTION as RUNTIME_DISTRIBUTION
    from gankit.registry._registry import Registry as Registry
    from gankit.registry._registry import create_plugin as create_plugin
    from gankit.registry._registry import get_plugin as get_plugin
    from gankit.registry._registry import list_plugins as list_plugins
    from gankit.registry._registry import register_plugin as register_plugin
    from gankit.registry._registry import registry as registry
    from gankit.registry._registry import split_name as split_name
    from gankit.registry._scaffold import template_values as template_values
    from gankit.registry._scaffold import write_plugin_package as write_plugin_package
    from gankit.registry._sizing import build_on_meta as build_on_meta
    from gankit.registry._sizing import check_model_fits as check_model_fits
    from gankit.registry._sizing import check_training_fits as check_training_fits
    from gankit.registry._sizing import check_weights_fit as check_weights_fit
    from gankit.registry._sizing import host_available_bytes as host_available_bytes
    from gankit.registry._sizing import on_meta as on_meta
    from gankit.registry._sizing import on_meta_only as on_meta_only
    from gankit.registry._sizing import shrink_advice as shrink_advice
    from gankit.registry._sizing import weight_bytes as weight_bytes

__all__, __getattr__, __dir__ = lazy_exports(__name__)
