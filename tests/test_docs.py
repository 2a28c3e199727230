"""The documentation is part of the product: its examples run, and it covers what the code offers.

Every ```python block of README.md and docs/*.md runs, in file order, the blocks of one file sharing a namespace, in
a temporary working folder that holds ``dcgan.safetensors`` (a small DCGAN trained for two steps on fake data).
Blocks whose info string is ``python no-run`` are skipped. The other tests check that the docs name every flag,
interface member, export metadata key and built-in plugin option, that the plugin reference is what the docstrings
say, that the DCGAN tables of docs/math.md are what the models do, that the plugin guide's package is installable as
written, and that relative links resolve.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from gankit.cli import main
from gankit.export import METADATA_KEYS
from gankit.registry import KINDS, RUNTIME_DISTRIBUTION, Registry, registry
from gankit.run import build_config, read_toml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
PENDING_IMAGES: set[tuple[Path, str]] = set()
"""Links to pictures the lead adds from a real training run; allowed to be missing until then."""


# -- reading markdown ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """A fenced code block: info string, text (a list item's indentation removed), first and closing-fence lines."""

    info: str
    code: str
    line: int
    end: int

    @property
    def runs(self) -> bool:
        words = self.info.split()
        return bool(words) and words[0] == "python" and "no-run" not in words[1:]


FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


def code_blocks(path: Path) -> list[Block]:
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        index += 1
        if not opening:
            continue
        indent, fence, info = len(opening["indent"]), opening["fence"], opening["info"].strip()
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        first = index + 1
        body: list[str] = []
        while index < len(lines) and not closing.match(lines[index]):
            line = lines[index]
            body.append(line[indent:] if line[:indent].strip() == "" else line)
            index += 1
        index += 1
        blocks.append(Block(info, "\n".join(body) + "\n", first, index))
    return blocks


def text_outside_code(path: Path) -> str:
    """The page with its fenced code blocks blanked out (line numbers kept); inline code stays."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for block in code_blocks(path):
        for number in range(block.line - 1, min(block.end, len(lines))):
            lines[number] = ""
    return "\n".join(lines) + "\n"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*$", text_outside_code(path), flags=re.MULTILINE)}


def section(text: str, heading: str) -> str:
    """From ``heading`` (a whole line) to the next heading of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    start = text.index(heading + "\n")
    rest = text[start + len(heading) :]
    end = re.search(rf"^#{{1,{level}}} ", rest, flags=re.MULTILINE)
    return rest[: end.start()] if end else rest


# -- running the examples --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dcgan_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small DCGAN export, trained for two steps on fake data, for the examples that load ``dcgan.safetensors``."""
    from test_training import fake_config

    from gankit.run import train

    small = {"batch_size": 8, "max_steps": 2, "sample_count": 4, "dataset_options": {"size": 32}}
    widths = {"generator_options": {"width": 8}, "discriminator_options": {"width": 8}}
    return train(fake_config(tmp_path_factory.mktemp("dcgan"), generator="dcgan", **small, **widths)).export_path


@pytest.fixture
def forget_runtime_plugins() -> Iterator[None]:
    """Plugins the examples register at runtime are unregistered afterwards."""
    before = {(entry.kind, entry.name) for entry in registry.entries() if entry.distribution == RUNTIME_DISTRIBUTION}
    yield
    for entry in registry.entries():
        if entry.distribution == RUNTIME_DISTRIBUTION and (entry.kind, entry.name) not in before:
            registry.unregister(entry.kind, entry.name)


def run_page(path: Path) -> int:
    """Execute the page's runnable blocks in one fresh module; tracebacks point at the page's own lines."""
    module = types.ModuleType("gankit_docs_" + re.sub(r"\W", "_", path.stem))
    module.__file__ = str(path)
    sys.modules[module.__name__] = module  # pydantic resolves annotations through the class's module
    try:
        ran = 0
        for block in code_blocks(path):
            if block.runs:
                exec(compile("\n" * (block.line - 1) + block.code, str(path), "exec"), module.__dict__)
                ran += 1
        return ran
    finally:
        del sys.modules[module.__name__]


@pytest.mark.slow
@pytest.mark.usefixtures("forget_runtime_plugins")
@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_examples_run(page: Path, dcgan_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(dcgan_export, tmp_path / "dcgan.safetensors")
    monkeypatch.chdir(tmp_path)
    run_page(page)


def test_block_parser_finds_the_examples() -> None:
    counts = {page.name: sum(block.runs for block in code_blocks(page)) for page in PAGES}
    assert all(counts[name] >= 1 for name in ("README.md", "export.md", "plugins.md", "math.md", "cli.md")), counts
    skipped = [
        block for block in code_blocks(DOCS / "plugins.md") if block.info.startswith("python") and not block.runs
    ]
    assert skipped and all(block.info == "python no-run" for block in skipped)


# -- coverage of the code by the docs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [[], *([name] for name in sorted(main.commands))], ids=lambda c: " ".join(c) or "gankit"
)
def test_every_flag_is_documented(command: list[str]) -> None:
    output = CliRunner().invoke(main, [*command, "--help"]).output
    flags = set(re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", output.split("Options:", 1)[1].split("Commands:")[0]))
    assert "--help" in flags
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    missing = sorted(flag for flag in flags if not re.search(rf"`{re.escape(flag)}(?![\w-])", text))
    assert not missing, f"docs/cli.md does not mention {missing} of `gankit {' '.join(command)}`"


def test_every_command_has_a_section() -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    for name in main.commands:
        assert f"## `gankit {name}`" in text


def interface_names() -> dict[str, list[str]]:
    """Public classes of gankit.interfaces -> their public members (methods, properties, fields, class attributes).

    ``""`` maps to the module-level names, ``"_Plugin"`` to the attributes every plugin class inherits.
    """
    import ast

    import gankit.interfaces

    tree = ast.parse(Path(gankit.interfaces.__file__).read_text(encoding="utf-8"))
    names: dict[str, list[str]] = {"": []}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            members: list[str] = []
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    members.append(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    members.append(item.target.id)
                elif isinstance(item, ast.Assign):
                    members.extend(target.id for target in item.targets if isinstance(target, ast.Name))
            public = [m for m in members if m == "__init__" or not (m.startswith("_") or m == "model_config")]
            names[node.name] = public
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names[""].extend(t.id for t in targets if isinstance(t, ast.Name) and not t.id.startswith("_"))
    return names


def test_every_interface_name_is_in_the_plugin_reference() -> None:
    reference = section(text_outside_code(DOCS / "plugins.md"), "## Reference: `gankit.interfaces`")
    problems = []
    for cls, members in interface_names().items():
        if cls in ("", "_Plugin"):
            where, scope = "the reference", reference
        elif f"### `{cls}`\n" not in reference:
            problems.append(f"class {cls} has no '### `{cls}`' heading")
            continue
        else:
            where, scope = f"the section of {cls}", section(reference, f"### `{cls}`")
        problems += [f"{cls}.{m} is not in {where}" for m in members if not re.search(rf"`{re.escape(m)}\b", scope)]
    assert not problems, "docs/plugins.md does not document gankit.interfaces fully:\n" + "\n".join(problems)


def test_plugin_reference_is_what_the_docstrings_say() -> None:
    page = (DOCS / "plugins.md").read_text(encoding="utf-8")
    assert load_docs_script("reference").updated(page) == page, (
        "the reference in docs/plugins.md is out of date with the docstrings of gankit/interfaces.py and "
        "gankit/registry/_registry.py; regenerate it with `python docs/reference.py`"
    )


def test_every_metadata_key_is_in_the_export_table() -> None:
    text = (DOCS / "export.md").read_text(encoding="utf-8")
    missing = [key for key in METADATA_KEYS if f"\n| `{key}` |" not in text]
    assert not missing, f"docs/export.md has no table row for the metadata key(s) {missing}"


def test_every_builtin_plugin_option_is_documented() -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    for entry in registry.entries():
        if entry.distribution != "gankit":
            continue
        rows = [line for line in text.splitlines() if line.startswith(f"| {entry.kind} | `{entry.name}` |")]
        assert len(rows) == 1, f"docs/cli.md has no row for the built-in {entry.kind} '{entry.name}'"
        fields = registry.load(entry.kind, entry.name).Options.model_fields
        missing = [field for field in fields if f"`{field}" not in rows[0]]
        assert not missing, f"docs/cli.md does not list {missing} for the {entry.kind} '{entry.name}'"


def test_config_file_examples_are_valid(tmp_path: Path) -> None:
    blocks = [block for block in code_blocks(DOCS / "cli.md") if block.info == "toml"]
    assert blocks
    for number, block in enumerate(blocks):
        path = tmp_path / f"example{number}.toml"
        path.write_text(block.code, encoding="utf-8")
        build_config(read_toml(path))


def test_seeds_config_file_is_the_seeds_model() -> None:
    """examples/seeds.toml, which cli.md and results.md point to, validates and is the seeds' model and recipe."""
    config = build_config(read_toml(ROOT / "examples" / "seeds.toml"))
    model = (config.generator, config.discriminator_name, config.loss, config.image_size)
    assert model == ("dcgan", "dcgan", "nonsat", 28)
    assert config.generator_options == {"width": 128} and config.discriminator_options == {"width": 64}
    recipe = (config.batch_size, config.lr_g, config.lr_d, config.betas, config.ema)
    assert recipe == (128, 2e-4, 2e-4, (0.5, 0.999), False)
    for page in (DOCS / "cli.md", DOCS / "results.md"):
        assert "examples/seeds.toml" in page.read_text(encoding="utf-8"), page.name


def test_time_per_epoch_section_is_there() -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert "## Time per epoch\n" in text


def load_docs_script(name: str) -> types.ModuleType:
    """``docs/NAME.py``, one of the scripts that write parts of the docs from the code."""
    spec = importlib.util.spec_from_file_location(f"gankit_docs_{name}", DOCS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


@pytest.mark.slow
def test_dcgan_tables_are_what_the_models_do() -> None:
    tables = load_docs_script("figures").markdown_tables()
    assert tables in (DOCS / "math.md").read_text(encoding="utf-8"), (
        "the DCGAN tables in docs/math.md are out of date; replace them with `python docs/figures.py --tables`"
    )


def test_figures_exist() -> None:
    for name in ("generator-loss-gradients.png", "dcgan-shapes.png"):
        assert (DOCS / "images" / name).is_file(), f"run `python docs/figures.py` to draw docs/images/{name}"


# -- the plugin guide's package --------------------------------------------------------------------------------------


def test_plugin_guide_package_installs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Write the guide's files, install its entry points as pip would (a .dist-info), and load every plugin."""
    blocks = code_blocks(DOCS / "plugins.md")
    (toml,) = [block.code for block in blocks if block.info == "toml"]
    (tmp_path / "pyproject.toml").write_text(toml, encoding="utf-8")
    project = read_toml(tmp_path / "pyproject.toml")["project"]
    groups = project["entry-points"]
    assert set(groups) == {group for group, _ in KINDS.values()}

    site = tmp_path / "site"
    for block in blocks:
        header = re.match(r"# (src/\S+\.py)( \(continued\))?\n", block.code)
        if block.runs and header:
            target = site / Path(header[1]).relative_to("src")
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("a", encoding="utf-8") as handle:
                handle.write(block.code)
    for package in {path.parent for path in site.rglob("*.py")}:
        (package / "__init__.py").touch()
    dist_info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in entries.items()) + "\n"
            for group, entries in groups.items()
        )
    )
    monkeypatch.syspath_prepend(str(site))
    packages = {path.parent.name for path in site.glob("*/__init__.py")}
    try:
        fresh = Registry()
        ours = [entry for entry in fresh.entries() if entry.distribution == project["name"]]
        assert len(ours) == sum(len(entries) for entries in groups.values())
        for entry in ours:
            assert entry.version == project["version"]
            assert fresh.status(entry) == "ok", fresh.status(entry)
        generator = fresh.create("generator", "mine", {"width": 4})
        assert generator(generator.sample_latent(2)).shape == (2, 1, 28, 28)
    finally:
        for name in list(sys.modules):
            if name.split(".")[0] in packages:
                del sys.modules[name]


# -- links -----------------------------------------------------------------------------------------------------------


LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_relative_links_resolve(page: Path) -> None:
    problems = []
    for target in LINK.findall(re.sub(r"`[^`\n]*`", "", text_outside_code(page))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        if not linked.exists():
            if (page, file_part) not in PENDING_IMAGES:
                problems.append(f"{target}: no such file")
            continue
        if anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            problems.append(f"{target}: no heading with the anchor #{anchor} in {linked.name}")
    assert not problems, f"broken links in {page.name}:\n" + "\n".join(problems)


def test_readme_layout_names_every_module() -> None:
    """README's layout sketch matches the tree: every module is named, and nothing named is missing."""
    text = (ROOT / "README.md").read_text()
    sketch = text[text.index("```text", text.index("## Layout")) :]
    named = set(re.findall(r"(?<![\w/])(_?[a-z_]+\.py)\b", sketch))
    core = ROOT / "gankit"
    modules = {path.name for path in core.glob("*.py") if path.name not in ("__init__.py", "__main__.py")}
    modules |= {path.name for path in core.glob("*/_[a-z]*.py") if path.parent.name != "cli"}
    modules |= {path.name for path in (ROOT / "plugins").glob("*.py") if path.name != "__init__.py"}
    assert modules - named == set(), "modules missing from README's Layout section"
    assert named - modules == set(), "README's Layout section names modules that do not exist"
    for folder in ("files", "registry", "export", "pictures", "evaluation", "run", "cli", "templates"):
        assert f"{folder}/" in sketch
