"""Write the reference section of docs/plugins.md from the docstrings of gankit/interfaces.py and
gankit/registry/_registry.py (with gankit/registry/_entries.py, whose names ``gankit.registry`` exports too).

    python docs/reference.py           # rewrites the text between the reference markers of docs/plugins.md
    python docs/reference.py --check   # exits 1 when that text is not what the docstrings say

Everything comes from the source: classes, members and signatures as written, the docstrings (the string after an
attribute included), and the options' types, defaults, bounds and descriptions from their pydantic fields.
``tests/test_docs.py`` fails when the page is stale. To change the reference, edit the docstrings and rerun this.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import itertools
import re
import sys
import textwrap
from pathlib import Path
from types import ModuleType

from pydantic import BaseModel

import gankit.interfaces
import gankit.registry._entries
import gankit.registry._registry
from gankit.registry import describe_options

PAGE = Path(__file__).resolve().parent / "plugins.md"
START = "<!-- reference:start -->"
END = "<!-- reference:end -->"
WIDTH = 120
REGISTRY_NAMES = ("KINDS", "list_plugins", "get_plugin", "create_plugin", "register_plugin", "registry", "split_name")
"""The public helpers of gankit.registry a plugin author or a notebook calls, documented in this order, followed by
the classes: ``Registry`` (every public method) and the two it deals in, ``PluginKind`` and ``PluginEntry``."""
REGISTRY_CLASSES = ("Registry", "PluginKind", "PluginEntry")


def markdown(docstring: str | None) -> list[str]:
    """A docstring as markdown paragraphs: ``code`` becomes `code`, lines are joined, list items kept apart."""
    paragraphs = []
    for block in inspect.cleandoc(docstring or "").split("\n\n"):
        items = re.split(r"\n(?=- )", block.replace("``", "`"))
        paragraphs.append("\n".join(" ".join(item.split()) for item in items if item.strip()))
    return [paragraph for paragraph in paragraphs if paragraph]


def wrap(text: str, indent: str = "") -> str:
    """``text`` wrapped at the docs' width, never inside `code`; continuation lines indented by ``indent``."""
    glued = re.sub(r"`[^`]*`", lambda span: span[0].replace(" ", "\0"), text)  # no line breaks inside code spans
    lines = []
    for line in glued.splitlines():
        hanging = indent or ("  " if line.startswith("- ") else "")
        wrapper = textwrap.TextWrapper(WIDTH, subsequent_indent=hanging, break_long_words=False, break_on_hyphens=False)
        lines.append(wrapper.fill(line))
    return "\n".join(lines).replace("\0", " ")


def item(code: str, tags: list[str], docstring: str | None) -> str:
    """One member as a list item: ``- `code` (tags): docstring``."""
    head = f"- `{code}`" + (f" ({', '.join(tags)})" if tags else "")
    text = " ".join(markdown(docstring))
    return wrap(f"{head}: {text}" if text else f"{head}.", "  ")


def source_of(node: ast.AST) -> str:
    """Source text of ``node`` as ruff formats it (``ast.unparse`` writes 'strings' in single quotes)."""
    return re.sub(r"'([^'\"\\]*)'", r'"\1"', ast.unparse(node))


def signature(node: ast.FunctionDef) -> str:
    arguments = re.sub(r"(?<=[^\s=!<>])=(?=[^\s=])", " = ", source_of(node.args))  # annotated, so `x: int = 1`
    returns = f" -> {source_of(node.returns)}" if node.returns else ""
    return f"{node.name}({arguments}){returns}"


def decorators(node: ast.FunctionDef) -> list[str]:
    names = [source_of(decorator).split(".")[-1] for decorator in node.decorator_list]
    return [{"abstractmethod": "abstract"}.get(name, name) for name in names]


def attribute_docs(body: list[ast.stmt]) -> dict[str, str]:
    """Name -> the string literal that follows its assignment (the attribute docstring convention)."""
    docs = {}
    for statement, following in itertools.pairwise(body):
        target = statement.target if isinstance(statement, ast.AnnAssign) else None
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target = statement.targets[0]
        text = following.value.value if isinstance(following, ast.Expr) else None
        if isinstance(target, ast.Name) and isinstance(text, str):
            docs[target.id] = text
    return docs


def public(name: str) -> bool:
    return name == "__init__" or not (name.startswith("_") or name == "model_config")


def members(node: ast.ClassDef, cls: type) -> list[str]:
    """The class's own public members, in source order; pydantic fields with their types, defaults and bounds."""
    docs = attribute_docs(node.body)
    fields = {o.name: o for o in describe_options(cls)} if issubclass(cls, BaseModel) else {}
    lines = []
    for statement in node.body:
        if isinstance(statement, ast.FunctionDef) and public(statement.name):
            tags = decorators(statement)
            code = signature(statement)
            if "property" in tags:
                code = f"{statement.name} -> {source_of(statement.returns)}" if statement.returns else statement.name
            lines.append(item(code, tags, ast.get_docstring(statement)))
        elif isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            name = statement.target.id
            if name in fields:
                option = fields[name]
                bounds = [option.bounds_text] if option.bounds_text else []
                lines.append(item(f"{name}: {option.type} = {option.default_text}", bounds, option.description))
            elif public(name):
                value = f" = {source_of(statement.value)}" if statement.value else ""
                lines.append(item(f"{name}: {source_of(statement.annotation)}{value}", [], docs.get(name)))
    return lines


def class_section(node: ast.ClassDef, module: ModuleType, title: str | None = None) -> list[str]:
    bases = ", ".join(source_of(base) for base in node.bases)
    decorated = "".join(f"@{source_of(decorator)} " for decorator in node.decorator_list)
    header = f"`{decorated}class {node.name}({bases})`" if bases else f"`{decorated}class {node.name}`"
    body = [wrap(paragraph) for paragraph in markdown(ast.get_docstring(node))]
    listed = members(node, getattr(module, node.name))
    return [f"### `{title or node.name}`", header, *body, *(["\n".join(listed)] if listed else [])]


def function_section(node: ast.FunctionDef, title: str) -> list[str]:
    tags = decorators(node)
    code = f"`{signature(node)}`" + (f" ({', '.join(tags)})" if tags else "")
    return [f"### `{title}`", wrap(code), *(wrap(paragraph) for paragraph in markdown(ast.get_docstring(node)))]


def constant_section(names: list[tuple[ast.stmt, str | None]], title: str) -> list[str]:
    lines = []
    for statement, doc in names:
        assert isinstance(statement, ast.Assign | ast.AnnAssign)
        code = source_of(statement)
        if isinstance(statement.value, ast.Dict):
            code = code.split(" = ")[0]  # a table is shown by its entries' docstrings, not spelled out
        lines.append(item(code, [], doc))
    return [f"### {title}", "\n".join(lines)]


def parse(module: ModuleType) -> ast.Module:
    assert module.__file__ is not None
    return ast.parse(Path(module.__file__).read_text(encoding="utf-8"))


def interfaces_reference() -> list[str]:
    module = gankit.interfaces
    tree = parse(module)
    docs = attribute_docs(tree.body)
    constants = [
        (statement, docs.get(source_of(statement).split(" = ")[0]))
        for statement in tree.body
        if isinstance(statement, ast.Assign | ast.AnnAssign)
    ]
    sections = ["## Reference: `gankit.interfaces`", *(wrap(p) for p in markdown(module.__doc__))]
    sections += constant_section(constants, "Constants")
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            sections += class_section(node, module)
    return sections


def registry_reference() -> list[str]:
    module = gankit.registry._registry
    body = [node for each in (gankit.registry._entries, module) for node in parse(each).body]
    docs = attribute_docs(body)
    nodes: dict[str, ast.stmt] = {}
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            nodes[node.name] = node
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            nodes[source_of(node).split(" = ")[0].split(":")[0]] = node
    summary = markdown(module.__doc__)[0]
    sections = ["## Reference: `gankit.registry`", wrap(summary)]
    for name in REGISTRY_NAMES:
        node = nodes[name]
        if isinstance(node, ast.FunctionDef):
            sections += function_section(node, name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            sections += constant_section([(node, docs.get(name))], f"`{name}`")
        if name == "KINDS":
            sections.append(kinds_table())
    for name in REGISTRY_CLASSES:
        node = nodes[name]
        assert isinstance(node, ast.ClassDef)
        sections += class_section(node, module)
    return sections


def kinds_table() -> str:
    """``KINDS`` as it is at run time: kind, entry-point group, base class and the base class of its options."""
    header = "| kind | entry-point group | base class in `gankit.interfaces` | options base class |\n|---|---|---|---|"
    rows = [
        f"| `{kind}` | `{each.group}` | `{each.base_name}` | `{each.base.Options.__name__}` |"
        for kind, each in gankit.registry.KINDS.items()
    ]
    return "\n".join([header, *rows])


def generated() -> str:
    """The text between the markers, markers included."""
    note = (
        "<!-- Generated by `python docs/reference.py` from the docstrings of gankit/interfaces.py,\n"
        "     gankit/registry/_registry.py and gankit/registry/_entries.py: edit those, then rerun it. -->"
    )
    return "\n\n".join([START, note, *interfaces_reference(), *registry_reference(), END])


def updated(page: str) -> str:
    """``page`` with the text between its markers replaced by what the docstrings say now."""
    if page.count(START) != 1 or page.count(END) != 1:
        raise SystemExit(f"{PAGE} needs exactly one {START} and one {END} line")
    before, rest = page.split(START)
    _, after = rest.split(END)
    return before + generated() + after


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/plugins.md is stale; write nothing")
    args = parser.parse_args()
    page = PAGE.read_text(encoding="utf-8")
    fresh = updated(page)
    if args.check:
        sys.exit(0 if fresh == page else f"{PAGE} is stale: run `python docs/reference.py`")
    PAGE.write_text(fresh, encoding="utf-8")


if __name__ == "__main__":
    main()
