"""Every fenced block of the README, checked as its `<!-- readme-test: KIND -->` comment says (tests/readme_blocks.py).

The blocks of one `##`/`###` section share a fresh temporary folder outside the checkout and run in README order
(a test of a later block first runs the section's earlier ones). Commands run with `bash -euo pipefail`, the venv's
`lightning-adapt` and `python` first on PATH, a fresh HOME and Hugging Face cache, the hubs offline and pip without
an index, so a block can download nothing. A section with a slow block gets the default model, made once per test
session, at `checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct` in its folder, as after a user's first run
(tests/test_demo.py makes it from its name in an empty folder). `LIGHTNING_ADAPT_README` names another file to check.
"""

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.readme_blocks import HOW_TO_FIX, Block, commands, defined_tests, parse_readme, scripts_named, slug

ROOT = Path(__file__).resolve().parents[1]
README = Path(os.environ.get("LIGHTNING_ADAPT_README") or ROOT / "README.md").resolve()
BLOCKS, FORMAT_ERRORS = parse_readme(README)
TIMEOUT_S = {False: 300, True: 1800}
SMOLLM2 = Path("checkpoints/HuggingFaceTB/SmolLM2-135M-Instruct")


@dataclass
class Section:
    """A section's folder and how far through its blocks the session got."""

    folder: Path
    blocks: list[Block]
    done: int = 0
    failed: list[int] = field(default_factory=list)


def section_blocks(block: Block) -> list[Block]:
    return [b for b in BLOCKS if b.section_line == block.section_line]


def is_slow(block: Block) -> bool:
    """Slow itself, or after a slow block of its section (which it needs to have run)."""
    before = section_blocks(block)
    return any(b.slow for b in before[: before.index(block) + 1])


def runs_something(block: Block) -> bool:
    """The block starts a process: a command, or a Python file that is executed."""
    return block.kind in ("run", "run-slow") or (block.kind == "file" and block.arg.endswith(".py"))


def block_param(block: Block) -> pytest.param:
    """Every block that starts a process, or follows one in its section (which runs first), is in the slow tier (each
    starts `lightning-adapt` or Python with torch and Lightning: seconds of imports); the fast tier checks the
    comments and the covered blocks."""
    before = section_blocks(block)
    slow = is_slow(block) or any(runs_something(b) for b in before[: before.index(block) + 1])
    marks = [pytest.mark.slow] if slow else []
    return pytest.param(block, id=f"{slug(block.section)}-L{block.line}", marks=marks)


@pytest.fixture(scope="module")
def sections() -> dict[int, Section]:
    """The sections whose folder exists, by their heading's line."""
    return {}


@pytest.fixture(scope="module")
def block_env(tmp_path_factory) -> dict[str, str]:
    """The environment of every block: the venv first on PATH, nothing downloadable, no path into the checkout."""
    home = tmp_path_factory.mktemp("home")
    real_cache = os.environ.get("LIGHTNING_ADAPT_CACHE") or str(Path.home() / ".cache" / "lightning-adapt")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update({
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "HF_HOME": str(home / "hf"),
        "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PIP_NO_INDEX": "1",
        "LIGHTNING_ADAPT_CACHE": real_cache, "MPLBACKEND": "Agg", "LIGHTNING_ADAPT_TRACEBACK": "1",
    })  # fmt: skip
    return env


def test_every_block_has_a_fitting_readme_test_comment():
    assert BLOCKS or FORMAT_ERRORS, f"{README}: no code blocks found"
    assert not FORMAT_ERRORS, "\n".join(FORMAT_ERRORS) + "\n" + HOW_TO_FIX


@pytest.mark.parametrize("block", [block_param(b) for b in BLOCKS])
def test_readme_block(block: Block, sections, block_env, tmp_path_factory, request):
    if block.kind == "covered":
        check_covered(block)
        return
    section = sections.get(block.section_line)
    if section is None:
        folder = tmp_path_factory.mktemp(f"readme-{slug(block.section)[:40]}")
        assert not folder.resolve().is_relative_to(ROOT), f"{folder} lies inside the checkout {ROOT}"
        section = sections[block.section_line] = Section(folder, section_blocks(block))
    if is_slow(block) and not (section.folder / SMOLLM2).exists():
        smollm2 = request.getfixturevalue("smollm2_dir")
        (section.folder / SMOLLM2).parent.mkdir(parents=True, exist_ok=True)
        (section.folder / SMOLLM2).symlink_to(smollm2, target_is_directory=True)
    position = section.blocks.index(block)
    while section.done <= position and not section.failed:
        current = section.blocks[section.done]
        failure = run_block(current, section.folder, block_env)
        section.done += 1
        if failure:
            section.failed.append(current.line)
            earlier = "" if current is block else f"line {current.line}, before this block in its section, failed:\n"
            pytest.fail(earlier + failure, pytrace=False)
    if section.failed and section.failed[0] < block.line:
        pytest.fail(f"line {section.failed[0]}, before this block in its section, failed (see its test)", pytrace=False)


@pytest.mark.slow
def test_test_sh():
    """README "Two commands": `bash scripts/test.sh` installs the package, its plugins and test extras with
    constraints.txt into the running Python and then runs pytest with the arguments it is given; here the one test
    above, so that the suite does not run itself."""
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    command = "bash scripts/test.sh tests/test_readme.py::test_every_block_has_a_fitting_readme_test_comment"
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", command], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=TIMEOUT_S[True])  # fmt: skip
    assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout[-3000:] + result.stderr[-3000:]


def run_block(block: Block, folder: Path, env: dict[str, str]) -> str:
    """Run one block in `folder`; "" when it did what its comment says, else what went wrong."""
    if block.kind in ("output", "covered"):
        return ""
    if block.kind == "file":
        target = folder / block.arg
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.text, encoding="utf-8")
        if not block.arg.endswith(".py"):
            return ""
        argv = [sys.executable, block.arg]
    else:
        argv = ["bash", "-euo", "pipefail", "-c", block.text]
    timeout = TIMEOUT_S[is_slow(block)]
    try:
        result = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:  # its output is bytes, whatever `text` says
        output = "".join(part.decode(errors="replace") if isinstance(part, bytes) else part
                         for part in (e.stdout, e.stderr) if part)  # fmt: skip
        return describe(block, f"did not finish within {timeout} s", output)
    if result.returncode != 0:
        return describe(block, f"exited with {result.returncode}", result.stdout + result.stderr)
    return ""


def describe(block: Block, what: str, output: str) -> str:
    """Where the block is, what went wrong, the block and the end of its output."""
    comment = " ".join(filter(None, (block.kind, block.arg)))
    tail = "\n".join(output.splitlines()[-60:])
    return (f"{README.name}:{block.line} ({block.section}; readme-test: {comment}) {what}. Fix the block so that it "
            f"runs as written from an empty folder, or its comment.\n--- block ---\n{block.text}"
            f"--- output (last 60 lines) ---\n{tail}")  # fmt: skip


def check_covered(block: Block) -> None:
    """The named test exists, and each command of the block occurs in its file or in a script that file names."""
    file, test = block.arg.split("::", 1)
    where = f"{README.name}:{block.line} (readme-test: covered {block.arg})"
    assert (ROOT / file).is_file(), f"{where}: {file} does not exist; name the test that runs this block"
    assert test in defined_tests(ROOT / file), f"{where}: {file} has no test {test}; name the test that runs this block"
    test_text = (ROOT / file).read_text(encoding="utf-8")
    sources = [test_text] + [path.read_text(encoding="utf-8") for path in scripts_named(test_text, ROOT)]
    flat = [" ".join(source.split()) for source in sources]
    missing = [command for command in commands(block.text) if not any(command in source for source in flat)]
    assert not missing, (
        f"{where}: not run as written by {file} or a script it names: {missing}. Make the test run the block's text, "
        "or name the test that does."
    )
