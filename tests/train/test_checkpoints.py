"""Resuming survives damaged checkpoints: fall back to the newest intact one, say so, never
silently start over; partial files from a killed save are cleaned up."""

from __future__ import annotations

import pytest
import torch

from headless.train.classifier.checkpoints import (
    CHECKPOINT_DIR,
    LAST,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)


def _state(step: int) -> dict:
    return {"model": {"w": torch.full((2,), float(step))}, "step": step, "rng": {}}


def _save_steps(run_dir, steps, keep=3):
    for s in steps:
        save_checkpoint(run_dir, _state(s), s, keep=keep)
    return run_dir / CHECKPOINT_DIR


def test_intact_last_is_used_without_a_note(tmp_path):
    _save_steps(tmp_path, [10, 20])
    notes: list[str] = []
    state = load_checkpoint(tmp_path, on_note=notes.append)
    assert state["step"] == 20 and torch.equal(state["model"]["w"], torch.full((2,), 20.0))
    assert notes == []


def test_corrupt_last_falls_back_to_newest_intact_step(tmp_path):
    folder = _save_steps(tmp_path, [10, 20, 30])
    (folder / LAST).unlink()  # last.pt is a hard link of step 30: break both names apart
    (folder / LAST).write_bytes(b"\x80\x04garbage")
    (folder / "step_00000030.pt").write_bytes(b"truncated")
    notes: list[str] = []
    state = load_checkpoint(tmp_path, on_note=notes.append)
    assert state["step"] == 20
    assert len(notes) == 1 and "last.pt" in notes[0] and "step_00000030.pt" in notes[0]
    assert "resuming from step_00000020.pt (step 20)" in notes[0]


def test_a_file_that_is_no_checkpoint_is_skipped(tmp_path):
    folder = _save_steps(tmp_path, [10])
    (folder / LAST).unlink()
    torch.save({"something": 1}, folder / LAST)
    notes: list[str] = []
    assert load_checkpoint(tmp_path, on_note=notes.append)["step"] == 10
    assert "not a training checkpoint" in notes[0]


def test_all_damaged_is_an_error_not_a_fresh_start(tmp_path):
    folder = _save_steps(tmp_path, [10], keep=1)
    for p in folder.glob("*.pt"):
        p.unlink()
        p.write_bytes(b"")
    with pytest.raises(CheckpointError, match="no intact checkpoint.*last.pt.*step_00000010.pt"):
        load_checkpoint(tmp_path)


def test_partial_files_of_a_killed_save_are_removed(tmp_path):
    folder = _save_steps(tmp_path, [10])
    (folder / ".step_00000020.pt.tmp").write_bytes(b"half")
    (folder / f".{LAST}.tmp").write_bytes(b"half")
    notes: list[str] = []
    assert load_checkpoint(tmp_path, on_note=notes.append)["step"] == 10
    assert not list(folder.glob(".*.tmp"))
    assert ".step_00000020.pt.tmp" in notes[0]


def test_no_checkpoint_folder_means_a_fresh_run(tmp_path):
    assert load_checkpoint(tmp_path) is None


def test_a_diverged_checkpoint_is_skipped_for_the_last_finite_one(tmp_path):
    folder = _save_steps(tmp_path, [10, 20])
    (folder / LAST).unlink()
    bad = _state(30)
    bad["model"]["w"][0] = float("nan")
    torch.save(bad, folder / LAST)
    notes: list[str] = []
    assert load_checkpoint(tmp_path, on_note=notes.append)["step"] == 20
    assert "NaN or infinite weights (e.g. w)" in notes[0]


def test_weights_files_with_nan_are_refused_by_every_loader(tmp_path):
    from headless.features.backbones import load_backbone
    from headless.features.layouts import WeightsError
    from headless.sam.weights import CheckpointError as SamCheckpointError
    from headless.sam.weights import read_state_dict as read_sam

    torch.manual_seed(0)
    sd = load_backbone("test_dino_tiny16", "random").model.state_dict()
    sd = {k: v.clone() for k, v in sd.items()}
    sd["blocks.1.mlp.fc1.weight"][3, 3] = float("inf")
    torch.save(sd, tmp_path / "inf.pth")
    with pytest.raises(WeightsError, match=r"1 tensor\(s\) hold NaN or infinite.*fc1.weight"):
        load_backbone("test_dino_tiny16", tmp_path / "inf.pth")
    with pytest.raises(SamCheckpointError, match="NaN or infinite"):
        read_sam(tmp_path / "inf.pth")
    sd["blocks.1.mlp.fc1.weight"][3, 3] = 0.0
    torch.save(sd, tmp_path / "ok.pth")
    load_backbone("test_dino_tiny16", tmp_path / "ok.pth")  # the same file, finite, loads
