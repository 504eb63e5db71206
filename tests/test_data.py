"""Training data: grain pipelines over a video folder + manifest, TFDS, and the toy world."""

import json

import numpy as np
import pytest

from jaxvid.data.pipeline import DataConfig, VideoPipeline, read_manifest
from jaxvid.data.toyworld import ToyWorld
from jaxvid.data.video import write_video
from jaxvid.text import default_tokenizer


@pytest.fixture(scope="module")
def tok():
    return default_tokenizer()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Four good clips, one unreadable file, one too short, one listed but missing."""
    root = tmp_path_factory.mktemp("videos")
    world = ToyWorld(1, frames=20, size=48)
    lines = []
    for i in range(4):
        write_video(root / f"v{i}.mp4", world[i]["video"], fps=10)
        lines.append({"video": f"v{i}.mp4", "caption": world[i]["caption"]})
    (root / "bad.mp4").write_bytes(b"junk" * 100)
    write_video(root / "short.mp4", world[5]["video"][:3], fps=10)
    lines += [{"video": "bad.mp4", "caption": "x"}, {"video": "short.mp4", "caption": "y"},
              {"video": "gone.mp4", "caption": "z"}]
    (root / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in lines))
    return root


def take(pipeline, n):
    it = pipeline.iterator()
    out = [next(it) for _ in range(n)]
    if hasattr(it, "close"):
        it.close()
    return out


def test_folder_windows_skip_bad_videos_and_are_deterministic(folder, tok):
    cfg = DataConfig(source="folder", path=str(folder), frames=8, fps=5.0, size=(32, 40))
    p = VideoPipeline(cfg, tok, batch_size=2)
    a = take(p, 4)
    assert a[0]["video"].shape == (2, 8, 32, 40, 3) and a[0]["video"].dtype == np.uint8
    assert a[0]["ids"].shape == (2, 77) and (a[0]["ids"][:, 0] == 49406).all()
    assert p.skipped >= 3 and any("unreadable" in r for r in p.skip_reasons) and any("<" in r for r in p.skip_reasons)
    b = take(VideoPipeline(cfg, tok, batch_size=2), 4)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x["video"], y["video"])
    c = take(VideoPipeline(DataConfig(**{**cfg.__dict__, "seed": 1}), tok, batch_size=2), 4)
    assert any(not np.array_equal(x["video"], y["video"]) for x, y in zip(a, c, strict=True))


def test_window_at_a_frame_rate_samples_evenly(tmp_path):
    """At 5 fps from a 10 fps video every other frame is taken (frames carry their index as grey)."""
    from jaxvid.data.pipeline import decode_window

    frames = np.repeat(np.repeat((np.arange(20) * 12)[:, None, None, None], 32, 1), 32, 2).repeat(3, 3)
    path = write_video(tmp_path / "count.mp4", frames.astype(np.uint8), fps=10)
    for seed in range(3):
        win = decode_window(str(path), 4, 5.0, np.random.default_rng(seed))
        idx = np.round(win.reshape(4, -1).mean(1) / 12).astype(int)
        assert np.diff(idx).tolist() == [2, 2, 2], idx
    assert decode_window(str(path), 30, None, np.random.default_rng(0)) == "20 frames < 30"


def test_processes_read_disjoint_shards(tok):
    cfg = DataConfig(source="toyworld", frames=2, size=(16, 16))
    shards = [take(VideoPipeline(cfg, tok, batch_size=1, shard_index=i, shard_count=2), 6) for i in range(2)]
    seen = [{x["video"].tobytes() for x in s} for s in shards]
    assert not seen[0] & seen[1]


def test_iterator_position_round_trips(tok):
    p = VideoPipeline(DataConfig(source="toyworld", frames=2, size=(16, 16)), tok, batch_size=2)
    it = p.iterator()
    next(it)
    state = it.get_state()
    want = [next(it)["video"] for _ in range(2)]
    it.set_state(state)
    got = [next(it)["video"] for _ in range(2)]
    for a, b in zip(want, got, strict=True):
        np.testing.assert_array_equal(a, b)


def test_worker_processes_give_the_same_batches(folder, tok):
    cfg = DataConfig(source="folder", path=str(folder), frames=4, size=(16, 16))
    a = take(VideoPipeline(cfg, tok, batch_size=2), 3)
    b = take(VideoPipeline(DataConfig(**{**cfg.__dict__, "workers": 2}), tok, batch_size=2), 3)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x["video"], y["video"])


def test_tfds_builder_round_trip(folder, tok, tmp_path):
    import tensorflow_datasets as tfds

    from jaxvid.data.tfds_videos import build

    build(folder, tmp_path)
    ds = tfds.data_source("jaxvid_videos", data_dir=str(tmp_path), split="train")
    assert len(ds) == 6  # the missing file is not listed
    p = VideoPipeline(DataConfig(source="tfds", path=str(tmp_path), frames=8, fps=5.0, size=(32, 32)), tok,
                      batch_size=2)
    batch = take(p, 2)[0]
    assert batch["video"].shape == (2, 8, 32, 32, 3) and p.skipped >= 2


def test_manifest_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no manifest"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.jsonl").write_text('{"video": "a.mp4", "caption": "x"}\n{"video": "b.mp4"}\n')
    with pytest.raises(ValueError, match="manifest.jsonl:2"):
        read_manifest(tmp_path)
    with pytest.raises(ValueError, match="needs data.path"):
        VideoPipeline(DataConfig(source="folder"), None, batch_size=1)
    with pytest.raises(ValueError, match="data source must be"):
        DataConfig(source="youtube")


def test_toyworld_edit_pairs_share_the_window_and_carry_the_edited_caption(tok):
    """``toyworld_edits``: each record is a clip and its ground-truth edit (``ToyWorld.edit``, the
    kind cycling with the index); a window cuts the same frames from both; batches carry
    ``edited`` beside ``video`` and the edited caption's ids."""
    from jaxvid.data.pipeline import _Tokenize, _Window
    from jaxvid.data.toyworld import EDIT_KINDS, ToyEdits
    from jaxvid.text import tokenize

    world = ToyWorld(0, frames=3, size=16)
    edits = ToyEdits(world)
    for i in range(5):
        e, r = world.edit(i, EDIT_KINDS[i % len(EDIT_KINDS)]), edits[i]
        np.testing.assert_array_equal(r["video"], e.source)
        np.testing.assert_array_equal(r["edited"], e.target)
        assert r["caption"] == e.target_caption != e.source_caption
    frames = np.arange(8, dtype=np.uint8)[:, None, None, None] * np.ones((8, 16, 16, 3), np.uint8)
    for seed in range(4):
        w = _Window(DataConfig(source="toyworld_edits", frames=3, size=(16, 16))).random_map(
            {"video": frames, "edited": frames + 100, "caption": "c"}, np.random.default_rng(seed))
        assert w["video"].shape == (3, 16, 16, 3)
        np.testing.assert_array_equal(w["edited"], w["video"] + 100)
    b = take(VideoPipeline(DataConfig(source="toyworld_edits", frames=3, size=(16, 16)), tok, batch_size=2), 1)[0]
    assert b["edited"].shape == b["video"].shape and b["edited"].dtype == np.uint8
    assert all((b["edited"][r] != b["video"][r]).any() for r in range(2))
    t = _Tokenize(tok, 77).map(edits[1])
    np.testing.assert_array_equal(t["ids"], tokenize(tok, edits[1]["caption"], max_length=77)[0])
    np.testing.assert_array_equal(t["edited"], edits[1]["edited"])
