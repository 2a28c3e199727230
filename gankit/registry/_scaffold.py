"""A new plugin package from gankit's templates: it installs, passes its own tests and trains by name.

The files come from ``gankit/templates/plugin/``: every ``*.tmpl`` file there is rendered with ``string.Template``
(``$name``, ``$distribution``, ``$package``, ``$prefix``, ``$api_version``, ``$gankit_version``) and written without
its suffix, with ``PACKAGE`` in its path replaced by the import package's name. ``gankit plugin new`` calls it.
"""

from __future__ import annotations

import os
import re
import shutil
import string
import tempfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from gankit.errors import ConfigError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable  # importlib.abc before Python 3.11

NAME_PATTERN = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")
MAX_NAME_LENGTH = 40
TEMPLATE_SUFFIX = ".tmpl"


def template_values(name: str) -> dict[str, str]:
    """What the templates' placeholders become for plugin ``name``; ConfigError if the name will not do."""
    if not (NAME_PATTERN.fullmatch(name) and len(name) <= MAX_NAME_LENGTH):
        raise ConfigError(
            f"plugin name {name!r} is not valid: use up to {MAX_NAME_LENGTH} lowercase letters and digits, starting "
            "with a letter, with single '-' or '_' between words (for example 'mygan' or 'my-gan')"
        )
    import gankit
    from gankit.interfaces import PLUGIN_API_VERSION

    return {
        "name": name,
        "distribution": f"gankit-{name}",
        "package": "gankit_" + name.replace("-", "_"),
        "prefix": "".join(word.capitalize() for word in re.split(r"[-_]", name)),
        "api_version": str(PLUGIN_API_VERSION),
        "gankit_version": gankit.__version__,
    }


def _templates(folder: Traversable, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    """(relative path parts, text) of every template under ``folder``, sorted."""
    found = []
    for item in sorted(folder.iterdir(), key=lambda item: item.name):
        if item.is_dir():
            found += _templates(item, (*prefix, item.name))
        elif item.name.endswith(TEMPLATE_SUFFIX):
            found.append(((*prefix, item.name.removesuffix(TEMPLATE_SUFFIX)), item.read_text(encoding="utf-8")))
    return found


def write_plugin_package(name: str, parent: Path) -> tuple[Path, list[Path]]:
    """Write ``parent/gankit-NAME/`` from the templates; returns the folder and its files. Never overwrites.

    The package is assembled in a temporary folder beside the destination and renamed into place, so an
    interrupted run leaves either the whole package or nothing.
    """
    values = template_values(name)
    target = parent / values["distribution"]
    if target.exists():
        raise ConfigError(f"{target} already exists; remove it or choose another --dir")
    templates = _templates(resources.files("gankit") / "templates" / "plugin")
    if not templates:
        raise ConfigError("gankit's plugin templates are missing from this installation; reinstall gankit")
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=parent))
    try:
        written = []
        for parts, text in templates:
            relative = Path(*(part.replace("PACKAGE", values["package"]) for part in parts))
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            (staging / relative).write_text(string.Template(text).substitute(values), encoding="utf-8")
            written.append(target / relative)
        os.rename(staging, target)  # fails rather than merging into a folder that appeared meanwhile
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target, written
