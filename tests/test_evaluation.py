"""Evaluation: toy-world ground-truth metrics on known answers, datasets that skip bad entries,
and a runner that resumes after a kill without recomputing finished videos."""

import csv
import json

import numpy as np
import pytest

from jaxvid.data.toyworld import EDIT_KINDS, ToyWorld
from jaxvid.data.video import write_video
from jaxvid.evaluation.datasets import TGVE_CSV, Dataset
from jaxvid.evaluation.methods import Method
from jaxvid.evaluation.runner import run
from jaxvid.metrics.toyworld import psnr, toy_metrics


@pytest.mark.parametrize("kind", EDIT_KINDS)
def test_ground_truth_metrics_know_right_from_wrong(kind):
    edit = ToyWorld(seed=3, size=48).edit(1, kind, frames=6)
    perfect = toy_metrics(edit.target, edit)
    assert perfect["attr_acc"] == 1.0 and perfect["psnr_in"] > 90 and perfect["ssim_in"] == pytest.approx(1.0)
    unedited = toy_metrics(edit.source, edit)  # returning the source: right outside, wrong inside
    assert unedited["psnr_out"] > 90 and unedited["psnr_in"] < 40
    assert unedited["attr_acc"] <= 0.5, unedited  # an occluded object may hide the change in a few frames
    noisy = np.clip(edit.target.astype(int) + np.random.default_rng(0).integers(-20, 21, edit.target.shape), 0, 255)
    m = toy_metrics(noisy.astype(np.uint8), edit)
    assert 20 < m["psnr_in"] < 40 and m["temporal_psnr"] < perfect["temporal_psnr"]


def test_psnr_of_known_error():
    a = np.zeros((1, 4, 4, 3), np.uint8)
    b = a + 10
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 / 100))
    mask = np.zeros((1, 4, 4), bool)
    mask[0, 0, 0] = True
    assert psnr(a, a, mask) > 90 and np.isnan(psnr(a, b, np.zeros_like(mask)))


def _identity(calls, fail_on=None, name="identity"):
    def edit(item):
        calls.append(item.name)
        if item.name == fail_on:
            raise KeyboardInterrupt  # the run is killed here
        return item.frames, {"inversion_s": 0.0, "forward_s": 0.1, "total_s": 0.1}

    return Method(name, edit)


def test_runner_resumes_after_a_kill_and_writes_tables(tmp_path):
    ds = Dataset("toyworld:3:4", size=(32, 32))
    calls = []
    second = ds.entries[1]["name"]
    with pytest.raises(KeyboardInterrupt):
        run(ds, [_identity(calls, fail_on=second)], tmp_path, progress=False)
    assert calls == [ds.entries[0]["name"], second]
    calls.clear()
    rows = run(ds, [_identity(calls)], tmp_path, progress=False)
    assert calls == [e["name"] for e in ds.entries[1:]]  # the finished video was not recomputed
    assert len(rows) == 3 and all("psnr_in" in r for r in rows)
    summary = (tmp_path / "summary.md").read_text()
    assert "| identity | 3 |" in summary and "attr_acc" in summary
    assert (tmp_path / "summary.csv").exists() and (tmp_path / "summary.png").exists()
    assert len(list((tmp_path / "sheets").glob("*.png"))) == 3


def test_a_method_named_by_a_path_gets_a_folder_of_its_own(tmp_path):
    ds = Dataset("toyworld:1:2", size=(32, 32))
    name = "svdiff@runs/toy world/memory-hw1/export"  # svdiff@PATH names carry slashes
    rows = run(ds, [_identity([], name=name)], tmp_path / "out", progress=False)
    assert rows[0]["method"] == name
    assert [p.name for p in (tmp_path / "out").iterdir() if p.is_dir() and p.name != "sheets"] == [
        "svdiff@runs_toy_world_memory-hw1_export"]
    assert f"| {name} | 1 |" in (tmp_path / "out" / "summary.md").read_text()


def test_datasets_report_and_skip_bad_entries(tmp_path):
    frames = ToyWorld(0, frames=6, size=32)[0]["video"]
    (tmp_path / "DAVIS_480p").mkdir()
    write_video(tmp_path / "DAVIS_480p" / "good.mp4", frames)
    (tmp_path / "DAVIS_480p" / "broken.mp4").write_bytes(b"junk" * 50)
    with (tmp_path / TGVE_CSV).open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Video name", "Our GT caption", "Style Change Caption", "Object Change Caption",
                    "Background Change Caption", "Multiple Changes Caption"])
        w.writerow(["good", "a circle", "a watercolor circle", "a square", "", "a red square"])
        w.writerow(["missing", "a dog", "x", "y", "z", "w"])
        w.writerow(["broken", "a cat", "x", "", "", ""])
    ds = Dataset(f"tgve:{tmp_path}", size=(32, 32))
    items = list(ds)
    assert [i.name for i in items] == ["good_style", "good_object", "good_multiple"]
    assert any("missing" in s for s in ds.skipped) and any("broken" in s for s in ds.skipped)
    (tmp_path / "prompts.jsonl").write_text(
        json.dumps({"video": "DAVIS_480p/good.mp4", "source_prompt": "a", "target_prompt": "b"}) + "\n{bad json\n")
    ds = Dataset(f"prompts:{tmp_path}", size=(32, 32), max_frames=4)
    items = list(ds)
    assert len(items) == 1 and items[0].frames.shape == (4, 32, 32, 3) and "prompts.jsonl:2" in ds.skipped[0]
    with pytest.raises(ValueError, match="unknown dataset"):
        Dataset("youtube:x", size=(32, 32))


def test_method_registry_names_and_refusals(tmp_path):
    from jaxvid.evaluation.methods import available, build

    (tmp_path / "temporal" / "window").mkdir(parents=True)
    (tmp_path / "temporal" / "window" / "temporal_config.json").write_text(json.dumps({"kind": "window"}))
    names = available(tmp_path)
    assert "svdiff-window" in names and "svdiff-shift" in names and "svdiff" not in names  # no trained memory
    assert "svdiff-linear" not in names and {"fve", "fve-no_tokenflow", "per_frame"} <= set(names)
    kw = dict(model_dir=tmp_path, edit_config=None, stream_config=None)
    for name, message in [("svdiff-linear", "no trained 'linear'"), ("svdiff-nope", "unknown temporal"),
                          ("fve-nope", "unknown FastVideoEdit"), ("nope", "unknown method")]:
        with pytest.raises(ValueError, match=message):
            build(name, None, **kw)
