"""Never lose a user's data: output folders are refused when they would destroy an input or something we did not
write, are written whole under a lock, survive kills, carry the user's umask, and exports refuse a changed base or a
checkpoint that names code."""

import errno
import hashlib
import json
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
from lightning_adapt.core.atomic import CLAIM, MARKER, OutputError, atomic_directory
from lightning_adapt.cli import main
from lightning_adapt.methods.export import export_model
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


def test_overwrite_refuses_a_folder_holding_files_we_did_not_write(trained, tmp_path):
    """Issue #31.3: the marker lists what we wrote; anything else in the folder (or an older marker without the
    list) is refused before any work, naming the files and the fix, and the folder is left as it was."""
    base, run, ckpt = trained
    out = tmp_path / "exported"
    export(ckpt, out)
    (out / "README_mine.md").write_text("my notes")
    (out / "plots").mkdir()
    (out / "plots" / "loss.png").write_bytes(b"png")
    inputs, before = (tree(base), tree(run)), tree(out)
    refusal = r"exported' holds files lightning-adapt did not write: README_mine.md, plots/\. Replacing the folder " \
              r"would delete them: move them out of it \(or choose a new folder\) and run again"
    with pytest.raises(SystemExit, match=refusal):
        export(ckpt, out, "--overwrite", "true")
    assert tree(out) == before and (tree(base), tree(run)) == inputs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]  # no staging folder either

    shutil.move(out / "README_mine.md", tmp_path / "README_mine.md")
    shutil.move(out / "plots", tmp_path / "plots")
    export(ckpt, out, "--overwrite", "true")  # the fix the message names works
    assert MARKER in tree(out)

    marker = json.loads((out / MARKER).read_text())
    (out / MARKER).write_text(json.dumps({key: value for key, value in marker.items() if key != "files"}))
    before = tree(out)
    with pytest.raises(SystemExit, match=f"written by an older lightning-adapt, whose {MARKER} does not list the files "
                                         "it wrote.*delete it or move it away yourself, or choose a new folder"):
        export(ckpt, out, "--overwrite", "true")
    assert tree(out) == before and (tree(base), tree(run)) == inputs


def test_reports_and_corpora_still_replace_their_own_earlier_folder(tmp_path):
    """compare rewrites its report/ and biography corpus with overwrite=True: our own files alone are replaced."""
    from lightning_adapt.data.biographies import write_biography_corpus

    icl = write_run(tmp_path / "runs" / "icl", info("icl", None), icl_rows())
    lora = write_run(tmp_path / "runs" / "lora", info("lora", "lightning_adapt.methods.finetune.FineTuning"),
                     lora_rows())
    build_report([icl, lora], tmp_path / "report")
    build_report([icl, lora], tmp_path / "report", overwrite=True)
    write_biography_corpus(tmp_path / "bio", n_people=2, paraphrases=2)
    write_biography_corpus(tmp_path / "bio", n_people=3, paraphrases=2)
    assert len(list((tmp_path / "bio" / "corpus").iterdir())) == 6
    (tmp_path / "report" / "mine.md").write_text("mine")
    before = tree(tmp_path / "report")
    with pytest.raises(OutputError, match="did not write: mine.md"):
        build_report([icl, lora], tmp_path / "report", overwrite=True)
    assert tree(tmp_path / "report") == before


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
        export_model(tmp_path / "other_base.ckpt", tmp_path / "out", format="litgpt")
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
@pytest.mark.slow
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


RUNNING_FIT = """
import sys
from pathlib import Path
import lightning as L
from lightning_adapt import FineTuning, Instructions, LoRA
from tests.helpers import quiet_trainer

class Pause(L.Callback):
    def on_train_start(self, trainer, module):
        print("training", flush=True)
        sys.stdin.readline()

module = FineTuning(sys.argv[1], lora=LoRA(r=4), out_dir=sys.argv[2])
trainer = quiet_trainer(Path(sys.argv[2]), max_steps=2, limit_val_batches=0, callbacks=[Pause()])
trainer.fit(module, datamodule=Instructions(sys.argv[3], batch_size=4))
"""


@pytest.mark.slow
def test_a_second_run_into_the_out_dir_of_a_running_one_is_refused_before_training(tmp_path, tiny_checkpoint):
    """Issue #31.4: a run claims its out_dir until it ends, so a second run's final/ never silently replaces the
    first's; once the first has ended, a run into the same out_dir replaces its final/ as before."""
    data = str(write_instruction_file(tmp_path / "train.jsonl"))
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-c", RUNNING_FIT, str(tiny_checkpoint), str(out), data], text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"})
    try:
        assert first.stdout.readline() == "training\n", first.stderr.read()[-2000:]
        before = tree(out)
        second = FineTuning(tiny_checkpoint, lora=LoRA(r=4), out_dir=out)
        trainer = quiet_trainer(tmp_path / "second", max_steps=2, limit_val_batches=0)
        with pytest.raises(OutputError, match=f"'{out}' is the out_dir of another training run that is still running "
                                              f".*{CLAIM}.*Give this run its own out_dir, or start it when the other"):
            trainer.fit(second, datamodule=Instructions(data, batch_size=4))
        assert trainer.global_step == 0 and tree(out) == before and not (out / "final").exists()
        _, errors = first.communicate("go\n", timeout=300)
    finally:
        first.kill()
    assert first.returncode == 0, errors[-2000:]
    assert MARKER in tree(out / "final")  # the first run's export, undisturbed
    trainer = quiet_trainer(tmp_path / "second", max_steps=2, limit_val_batches=0)
    trainer.fit(FineTuning(tiny_checkpoint, lora=LoRA(r=4), out_dir=out), datamodule=Instructions(data, batch_size=4))
    assert trainer.global_step == 2 and MARKER in tree(out / "final")


def test_a_folder_that_cannot_be_moved_is_refused_before_any_weights_are_read(trained, tmp_path, monkeypatch):
    """Issue #31.8: the swap renames an existing folder, which an immutable one refuses (as do a mount point and a
    folder in a sticky parent owned by another user) though a probe beside it can be created: refused before work."""
    _, run, ckpt = trained
    out = tmp_path / "out"
    export(ckpt, out)
    if subprocess.run(["chattr", "+i", str(out)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here (needs root and a file system with attributes)")
    try:
        before, inputs = tree(out), tree(run)
        monkeypatch.setattr("lightning_adapt.methods.export.load_module", lambda *args: pytest.fail("weights were read"))
        refusal = r"Cannot replace the output folder '.*/out': renaming '.*/out' to '.*/\.out\.old-\w+' failed " \
                  r"\(Operation not permitted\); it is left as it was\. Choose an output folder where .* chattr -i"
        with pytest.raises(SystemExit, match=refusal):
            export(ckpt, out, "--overwrite", "true")
        assert tree(out) == before and tree(run) == inputs
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    finally:
        subprocess.run(["chattr", "-i", str(out)], check=True)


def test_a_refused_rename_removes_our_staging_folder_and_keeps_the_previous_one(tmp_path, monkeypatch):
    """Issue #31.8: a rename that fails during the swap (simulated: a file system that refuses it) puts the previous
    folder back, removes our staging folder and raises an OutputError naming the folder and the fix."""
    target = tmp_path / "final"
    with atomic_directory(target, "export") as staging:
        (staging / "weights").write_text("old")
    before = tree(target)
    rename = os.replace

    def refuse_staging(source, destination):
        if Path(source).name.startswith(".final.tmp-"):
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), str(source), None, str(destination))
        rename(source, destination)

    monkeypatch.setattr(os, "replace", refuse_staging)
    refusal = r"Cannot replace the output folder '.*/final': renaming '.*/\.final\.tmp-\w+' to '.*/final' failed " \
              r"\(Invalid cross-device link\); it is left as it was\. Choose an output folder where you can create"
    with pytest.raises(OutputError, match=refusal):
        with atomic_directory(target, "export", overwrite=True) as staging:
            (staging / "weights").write_text("new")
    assert tree(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


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


@pytest.mark.slow
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


def test_only_a_folder_holding_nothing_but_what_we_wrote_is_ours_to_remove(tmp_path):
    """What DeepSpeed's pruning of old checkpoint folders asks before it removes one."""
    from lightning_adapt.core.atomic import atomic_directory, only_ours

    with atomic_directory(tmp_path / "step=2", "DeepSpeed checkpoint") as staging:
        (staging / "checkpoint").mkdir()
        (staging / "checkpoint" / "mp_rank_00_model_states.pt").write_bytes(b"weights")
    assert only_ours(tmp_path / "step=2", "DeepSpeed checkpoint")
    assert not only_ours(tmp_path / "step=2", "report")
    (tmp_path / "step=2" / "checkpoint" / "notes.txt").write_text("mine")
    assert not only_ours(tmp_path / "step=2", "DeepSpeed checkpoint")
