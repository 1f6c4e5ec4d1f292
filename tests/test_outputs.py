"""Never lose a user's data: output folders are refused when they would destroy an input or something we did not
write, are written whole under a lock, survive kills, carry the user's umask, and exports refuse a changed base or a
checkpoint that names code."""

import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lightning_adapt import CheckpointError, FineTuning, Instructions, LoRA, Optimization, build_report
from lightning_adapt.atomic import MARKER, OutputError, atomic_directory
from lightning_adapt.cli import main
from lightning_adapt.methods.base import export_from_checkpoint
from lightning_adapt.methods.checkpoints import MODULE_CLASS_KEY, PROMPT_STYLE_KEY
from tests.helpers import quiet_trainer, write_instruction_file
from tests.test_report import icl_rows, info, lora_rows, write_run

ROOT = Path(__file__).parents[1]


def tree(folder: Path) -> dict[str, str]:
    """Every file under `folder` with the SHA-256 of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_checkpoint):
    """A LoRA run on its own copy of the tiny base: (base folder, run folder, its .ckpt)."""
    root = tmp_path_factory.mktemp("trained")
    base = Path(shutil.copytree(tiny_checkpoint, root / "base"))
    module = FineTuning(base, lora=LoRA(r=4, alpha=8, dropout=0.0), optimization=Optimization(learning_rate=1e-2))
    data = Instructions(str(write_instruction_file(root / "train.jsonl")), batch_size=4)
    trainer = quiet_trainer(root / "run", max_steps=2, limit_val_batches=0, enable_checkpointing=True)
    trainer.fit(module, datamodule=data)
    trainer.save_checkpoint(root / "run" / "step2.ckpt")
    return base, root / "run", root / "run" / "step2.ckpt"


def export(ckpt: Path, out: Path, *flags: str) -> None:
    main(["export", str(ckpt), "--out_dir", str(out), *flags])


# --- 1-3: outputs that are, contain or lie inside an input -----------------------------------------------------


def test_export_into_the_runs_own_folder_is_refused_and_deletes_nothing(trained):
    _, run, ckpt = trained
    before = tree(run)
    with pytest.raises(SystemExit, match=r"contains the input .*step2.ckpt"):
        export(ckpt, run)
    assert tree(run) == before


@pytest.mark.parametrize("where", ["base", "base/merged"])
def test_export_into_or_inside_the_base_checkpoint_is_refused(trained, where):
    base, _, ckpt = trained
    before = tree(base)
    with pytest.raises(SystemExit, match=r"(is|lies inside) the input .*base"):
        export(ckpt, base.parent / where)
    assert tree(base) == before


def test_report_into_the_folder_holding_its_runs_is_refused(tmp_path):
    icl = write_run(tmp_path / "runs" / "icl", info("icl", None), icl_rows())
    lora = write_run(tmp_path / "runs" / "lora", info("lora", "lightning_adapt.methods.finetune.FineTuning"), lora_rows())
    before = tree(tmp_path / "runs")
    with pytest.raises(SystemExit, match="contains the input"):
        main(["report", str(icl), str(lora), "--out_dir", str(tmp_path / "runs")])
    with pytest.raises(OutputError, match="lies inside the input"):
        build_report([icl, lora], icl / "report")
    next(lora.rglob("accounting.json")).unlink()  # a broken run too: the output folder is refused before any run is read
    with pytest.raises(SystemExit, match="contains the input"):
        main(["report", str(icl), str(lora), "--out_dir", str(tmp_path / "runs")])
    assert tree(tmp_path / "runs") == {k: v for k, v in before.items() if k != "lora/logs/version_0/accounting.json"}


# --- replacing: only our own earlier output of the same kind, and only when asked --------------------------------


def test_existing_folders_are_replaced_only_when_ours_and_asked(trained, tmp_path):
    _, _, ckpt = trained
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit, match=f"not written by lightning-adapt .*{MARKER}.*never replaced"):
        export(ckpt, foreign, "--overwrite", "true")
    assert tree(foreign) == {"notes.txt": hashlib.sha256(b"keep me").hexdigest()}

    out = tmp_path / "exported"
    export(ckpt, out)
    first = tree(out)
    with pytest.raises(SystemExit, match="holds an earlier export. Pass --overwrite true to replace it"):
        export(ckpt, out)
    export(ckpt, out, "--overwrite", "true")
    assert tree(out) == first  # the same .ckpt on the same base: byte-identical, the update is not applied twice

    report = tmp_path / "report"
    report.mkdir()
    (report / MARKER).write_text('{"kind": "report"}')
    with pytest.raises(SystemExit, match=r"holds another kind of lightning-adapt output \(report, not export\)"):
        export(ckpt, report)


# --- 7: the base a checkpoint was trained on ---------------------------------------------------------------------


def test_export_refuses_a_checkpoint_whose_base_changed(trained, tmp_path):
    base, _, ckpt = trained
    moved = Path(shutil.copytree(base, tmp_path / "base"))
    weights = torch.load(moved / "lit_model.pth", weights_only=True)
    weights["lm_head.weight"] += 0.01
    torch.save(weights, moved / "lit_model.pth")
    checkpoint = torch.load(ckpt, weights_only=True)
    checkpoint["hyper_parameters"]["checkpoint_dir"] = str(moved)
    torch.save(checkpoint, tmp_path / "other_base.ckpt")
    with pytest.raises(CheckpointError, match=r"trained on top of .*base.*lit_model.pth in .* differ now"):
        export_from_checkpoint(tmp_path / "other_base.ckpt", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_resuming_on_a_changed_base_is_refused(trained, tmp_path):
    base, _, ckpt = trained
    changed = Path(shutil.copytree(base, tmp_path / "base"))
    weights = torch.load(changed / "lit_model.pth", weights_only=True)
    weights["transformer.wte.weight"] *= 1.01
    torch.save(weights, changed / "lit_model.pth")
    module = FineTuning(changed, lora=LoRA(r=4, alpha=8, dropout=0.0), optimization=Optimization(learning_rate=1e-2))
    data = Instructions(str(write_instruction_file(tmp_path / "train.jsonl")), batch_size=4)
    trainer = quiet_trainer(tmp_path / "run", max_steps=4, limit_val_batches=0)
    with pytest.raises(CheckpointError, match="The checkpoint being resumed was trained on top of .*differ now"):
        trainer.fit(module, datamodule=data, ckpt_path=ckpt)


def test_a_foreign_final_folder_is_refused_before_training(tmp_path, tiny_checkpoint):
    (tmp_path / "run" / "final").mkdir(parents=True)
    (tmp_path / "run" / "final" / "notes.txt").write_text("mine")
    module = FineTuning(tiny_checkpoint, lora=LoRA(r=4), out_dir=tmp_path / "run")
    data = Instructions(str(write_instruction_file(tmp_path / "train.jsonl")), batch_size=4)
    trainer = quiet_trainer(tmp_path / "run", max_steps=2, limit_val_batches=0)
    with pytest.raises(OutputError, match="run/final' exists and was not written by lightning-adapt"):
        trainer.fit(module, datamodule=data)
    assert trainer.global_step == 0 and (tmp_path / "run" / "final" / "notes.txt").read_text() == "mine"


def test_a_fit_writing_final_into_its_base_checkpoint_is_refused_before_training(tmp_path, tiny_checkpoint):
    base = Path(shutil.copytree(tiny_checkpoint, tmp_path / "base"))
    before = tree(base)
    module = FineTuning(base, lora=LoRA(r=4), out_dir=base)
    data = Instructions(str(write_instruction_file(tmp_path / "train.jsonl")), batch_size=4)
    trainer = quiet_trainer(tmp_path / "run", max_steps=2, limit_val_batches=0)
    with pytest.raises(OutputError, match=r"base/final' lies inside the input .*base"):
        trainer.fit(module, datamodule=data)
    assert trainer.global_step == 0 and tree(base) == before


# --- 8: a checkpoint never makes us import or call what it names -------------------------------------------------


@pytest.mark.parametrize("key", [MODULE_CLASS_KEY, PROMPT_STYLE_KEY])
def test_crafted_checkpoint_naming_a_function_is_refused_without_calling_it(trained, tmp_path, key):
    _, _, ckpt = trained
    checkpoint = torch.load(ckpt, weights_only=True)
    checkpoint[key] = "os.abort"
    torch.save(checkpoint, tmp_path / "crafted.ckpt")
    code = (
        "import sys\nfrom lightning_adapt.cli import main\n"
        f"main(['export', {str(tmp_path / 'crafted.ckpt')!r}, '--out_dir', {str(tmp_path / 'out')!r}])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 1, result.stderr[-2000:]  # SystemExit with the message; os.abort would be -6
    assert "names the" in result.stderr and "'os.abort'" in result.stderr and "never imported" in result.stderr
    assert "Traceback" not in result.stderr


# --- 9: writing: early refusal, locking, kills, stale temporary folders -------------------------------------------


def test_unwritable_output_is_refused_before_training(tmp_path, tiny_checkpoint):
    (tmp_path / "a_file").write_text("not a folder")
    module = FineTuning(tiny_checkpoint, lora=LoRA(r=4), out_dir=tmp_path / "a_file" / "run")
    data = Instructions(str(write_instruction_file(tmp_path / "train.jsonl")), batch_size=4)
    trainer = quiet_trainer(tmp_path / "logs", max_steps=2, limit_val_batches=0)
    with pytest.raises(OutputError, match=r"Cannot write the output folder .*a_file/run/final"):
        trainer.fit(module, datamodule=data)
    assert trainer.global_step == 0


def test_a_kill_between_the_two_renames_is_recovered_by_the_next_write(tmp_path):
    target = tmp_path / "final"
    with atomic_directory(target, "export") as staging:
        (staging / "weights").write_text("old")
    # the state a kill leaves after the old folder was moved aside and before the new one took its place
    os.replace(target, tmp_path / ".final.old-deadbeef")
    (tmp_path / ".final.tmp-cafebabe").mkdir()
    (tmp_path / ".final.tmp-cafebabe" / "weights").write_text("half")
    with pytest.raises(RuntimeError):
        with atomic_directory(target, "export", overwrite=True):
            raise RuntimeError("the new write fails too")
    assert (target / "weights").read_text() == "old"  # the previous folder is back
    with atomic_directory(target, "export", overwrite=True) as staging:
        (staging / "weights").write_text("new")
    assert (target / "weights").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


EXPORT_LOOP = """
import sys
from lightning_adapt.cli import main
for _ in range(int(sys.argv[3])):
    main(["export", sys.argv[1], "--out_dir", sys.argv[2], "--overwrite", "true"])
"""


@pytest.mark.slow
def test_interleaved_and_killed_exports_leave_one_complete_folder(trained, tmp_path):
    _, _, ckpt = trained
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}

    def start(count: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", EXPORT_LOOP, str(ckpt), str(out), str(count)], env=env,
                                stderr=subprocess.PIPE, text=True)

    writers = [start(3), start(3)]
    for writer in writers:
        assert writer.wait(timeout=300) == 0, writer.stderr.read()[-2000:]
    reference = tree(out)
    assert MARKER in reference and "lit_model.pth" in reference
    for delay in (0.5, 1.5, 3.0):  # SIGKILL a writer at different points of its work
        writer = start(50)
        time.sleep(delay)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        assert not out.exists() or tree(out) == reference
    export(ckpt, out, "--overwrite", "true")
    assert tree(out) == reference
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# --- 10: permissions follow the umask -----------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_exports_follow_the_umask(trained, tmp_path, umask):
    _, _, ckpt = trained
    previous = os.umask(umask)
    try:
        export(ckpt, tmp_path / "out")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o777 & ~umask
    for path in (tmp_path / "out").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path.name


def test_gpu_checks_refuse_an_out_folder_they_did_not_write(tmp_path):
    """scripts/gpu_checks.py writes only into a new or empty folder, or one it marked; a file or a folder of the
    user's is refused before any run and left as it was."""
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep")
    (tmp_path / "a_file").write_text("keep")
    for out, message in ((user, "holds files that scripts/gpu_checks.py did not write"), (tmp_path / "a_file", "is a file")):
        done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_checks.py"), "--out", str(out),
                               "--accelerator", "cpu", "--only", "sharded"], capture_output=True, text=True)
        assert done.returncode != 0 and message in done.stderr, done.stderr
    assert [p.name for p in user.iterdir()] == ["notes.txt"] and (user / "notes.txt").read_text() == "keep"
    assert (tmp_path / "a_file").read_text() == "keep"
