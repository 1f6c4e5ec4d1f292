"""The README's fenced code blocks and the `<!-- readme-test: KIND ... -->` comment above each, which says how
tests/test_readme.py checks the block (README "code blocks" contract)."""

import ast
import re
from dataclasses import dataclass
from pathlib import Path

COMMENT = re.compile(r"^<!--\s*readme-test:\s*(?P<kind>\S+)(?:\s+(?P<arg>.*?))?\s*-->$")
HEADING = re.compile(r"^(#{1,3})\s+(?P<title>.+?)\s*$")
FENCE = re.compile(r"^\s*(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")
KINDS = {
    "run": "a bash block, run as written from an empty folder (must exit 0)",
    "run-slow": "the same, in a test marked slow",
    "file NAME": "the block is written to NAME for the section's later blocks (a python file is also run, as slow)",
    "covered tests/FILE.py::TEST": "that test runs it as written (its text is in the test or a script it names)",
    "output": "printed output shown to the reader (language `text`)",
}
SHELLS = {"bash", "sh", "shell", "console"}
HOW_TO_FIX = "Put one of these comments on the line above the fence (blank lines allowed between):\n" + "\n".join(
    f"  <!-- readme-test: {syntax} -->  {what}" for syntax, what in KINDS.items()
)


class ReadmeFormatError(ValueError):
    """A block without a valid readme-test comment, or one whose comment does not fit the block."""


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, what it holds and how it is checked."""

    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    kind: str
    arg: str
    section: str  # the `##`/`###` heading above the block ("" before the first one)
    section_line: int  # the heading's line (0 before the first one): blocks with the same one share a folder

    @property
    def slow(self) -> bool:
        """Run in a test marked slow: `run-slow`, or a python file block (which is executed)."""
        return self.kind == "run-slow" or (self.kind == "file" and self.arg.endswith(".py"))


def slug(title: str) -> str:
    """A heading as a test id part: `### From a config (LitGPT style)` -> `from-a-config-litgpt-style`."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "top"


def parse_readme(path: Path) -> tuple[list[Block], list[str]]:
    """Every fenced block of the Markdown file `path` whose comment fits it, and an error (`path:line: what, the
    fix`) for every other block."""
    lines, blocks, errors = path.read_text(encoding="utf-8").splitlines(), [], []
    section, section_line, index = "", 0, 0
    while index < len(lines):
        line = lines[index]
        heading, fence = HEADING.match(line), FENCE.match(line)
        if heading and len(heading.group(1)) >= 2:
            section, section_line = heading.group("title"), index + 1
        if not fence:
            index += 1
            continue
        end = next((i for i in range(index + 1, len(lines)) if lines[i].strip() == fence.group("fence")), None)
        if end is None:
            errors.append(f"{path}:{index + 1}: the code block opened here is never closed")
            break
        try:
            kind, arg = block_comment(lines, index)
            block = Block(index + 1, fence.group("lang"), "\n".join(lines[index + 1 : end]) + "\n", kind, arg, section,
                          section_line)
            check_block(block)
            blocks.append(block)
        except ReadmeFormatError as e:
            errors.append(f"{path}:{index + 1}: {e}")
        index = end + 1
    return blocks, errors


def block_comment(lines: list[str], fence_index: int) -> tuple[str, str]:
    """The kind and argument of the readme-test comment above the fence at `fence_index`."""
    above = next((lines[i].strip() for i in range(fence_index - 1, -1, -1) if lines[i].strip()), "")
    match = COMMENT.match(above)
    if not match:
        raise ReadmeFormatError("this code block has no readme-test comment above it")
    return match.group("kind"), match.group("arg") or ""


def check_block(block: Block) -> None:
    """Refuse a comment that does not fit its block (unknown kind, no NAME, a command block in another language)."""
    if block.kind not in {syntax.split()[0] for syntax in KINDS}:
        raise ReadmeFormatError(f"unknown readme-test kind {block.kind!r}")
    if block.kind in ("run", "run-slow") and block.lang not in SHELLS:
        raise ReadmeFormatError(f"a {block.kind} block is run with bash: write ```bash, not ```{block.lang}")
    if block.kind == "file" and (not block.arg or Path(block.arg).is_absolute() or ".." in Path(block.arg).parts):
        raise ReadmeFormatError("`file` needs a relative file name: <!-- readme-test: file my_config.yaml -->")
    if block.kind == "covered" and not re.fullmatch(r"tests/[\w/]+\.py::\w+(::\w+)?", block.arg):
        raise ReadmeFormatError("`covered` needs the test that runs the block: <!-- readme-test: covered "
                                "tests/test_demo.py::test_name -->")  # fmt: skip
    if block.kind == "output" and block.lang != "text":
        raise ReadmeFormatError(f"an output block is text shown to the reader: write ```text, not ```{block.lang}")


def commands(script: str) -> list[str]:
    """The commands of a bash block: `\\` continuations joined, comments and blank lines left out, spaces collapsed."""
    joined = re.sub(r"\\\n", " ", script)
    found = []
    for line in joined.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line)
        if line.strip():
            found.append(" ".join(line.split()))
    return found


def defined_tests(test_file: Path) -> set[str]:
    """`name` and `Class::name` of every test function pytest collects from `test_file`."""
    names = set()
    for node in ast.parse(test_file.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            names |= {f"{node.name}::{item.name}" for item in node.body
                      if isinstance(item, ast.FunctionDef) and item.name.startswith("test")}  # fmt: skip
    return names


def scripts_named(text: str, root: Path) -> list[Path]:
    """The files of the repository at `root` whose relative path (a `.sh` or `.py` file) occurs in `text`."""
    paths = set(re.findall(r"[\w./-]+\.(?:sh|py)\b", text))
    return sorted(root / p for p in paths if not Path(p).is_absolute() and (root / p).is_file())
