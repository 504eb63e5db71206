"""The ``jaxvid`` command end to end (in-process through ``main``, or as a subprocess where a
real pipe, a signal or a fresh process matters)."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxvid.cli import build_parser, main
from jaxvid.data.video import read_video, write_video


def _video(path, n=8, h=64, w=96, fps=8):
    f = np.zeros((n, h, w, 3), np.uint8)
    f[..., 0] = np.linspace(0, 255, n).astype(np.uint8)[:, None, None]
    return write_video(path, f, fps=fps)


def _dims(path) -> tuple[int, int]:
    """(height, width) the file was written at."""
    import av

    with av.open(str(path)) as c:
        return c.streams.video[0].height, c.streams.video[0].width


def _run_cli(args, stdin: bytes = b"", env=None):
    return subprocess.run([sys.executable, "-m", "jaxvid.cli", *args], input=stdin, capture_output=True, timeout=600,
                          env={**os.environ, **(env or {})})


@pytest.fixture
def no_model(monkeypatch):
    """Any attempt to load a model fails the test: the error must come before."""
    import jaxvid.cli.edit
    import jaxvid.cli.generate
    import jaxvid.cli.stream

    def refuse(args):
        raise AssertionError("a model was loaded before the bad input was reported")

    for mod in (jaxvid.cli.edit, jaxvid.cli.generate, jaxvid.cli.stream):
        monkeypatch.setattr(mod, "load_bundle", refuse)


def test_every_option_has_help_and_version(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        for action in p._actions:
            assert action.help, f"jaxvid {name} {action.option_strings or action.dest} has no help text"
    with pytest.raises(SystemExit):
        main(["--version"])
    assert "jaxvid 0.1.0" in capsys.readouterr().out


def test_generate_default_model(tmp_path, capsys):
    out = tmp_path / "a.png"
    assert main(["generate", "--steps", "2", "-o", str(out)]) == 0
    assert np.asarray(Image.open(out)).shape == (64, 64, 3)  # the built-in model's own size
    assert "built-in toy-world model" in capsys.readouterr().err


def test_generate_model_folder_img2img_and_lora(tiny_model_dir, tmp_path):
    src = tmp_path / "in.png"
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(src)
    out = tmp_path / "b.png"
    assert main(["generate", "--model", str(tiny_model_dir), "--image", str(src), "--strength", "0.5",
                 "--num-images", "2", "-o", str(out)]) == 0
    assert np.asarray(Image.open(out)).shape == (32, 64, 3)


@pytest.mark.parametrize("argv", [["--frames", "0"], ["--frames", "-3"], ["--steps", "0"], ["--size", "0x64"],
                                  ["--guidance", "-1"], ["--stride", "0"]])
def test_nonsense_numbers_are_refused(tmp_path, argv, capsys, no_model):
    with pytest.raises(SystemExit) as e:
        main(["edit", str(tmp_path / "in.mp4"), "--source-prompt", "a", "--target-prompt", "b", *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "expected" in err or "size must" in err


def test_edit_errors_before_any_model_loads(tmp_path, capsys, no_model):
    src = _video(tmp_path / "in.mp4")
    base = ["--source-prompt", "a red circle", "--target-prompt", "a blue circle", "-o", str(tmp_path / "o.mp4")]
    cases = [
        ([str(tmp_path / "missing.mp4"), *base], "not found"),
        ([str(tmp_path / "noframes"), *base], "no frames"),
        ([str(tmp_path / "junk.webm"), *base], "cannot"),
        ([str(src), "--source-prompt", "", "--target-prompt", "x"], "source prompt is empty"),
        ([str(src), "--source-prompt", "a", "--target-prompt", " ".join(["blue circle"] * 50)], "drop"),
        ([str(src), *base, "--size", "100"], "multiple of"),
        ([str(src), *base, "--set", "edit.blend_thresh=0.3"], "unknown config key 'edit.blend_thresh'"),
        ([str(src), *base, "--set", "edit.blend_threshold=2"], "blend_threshold must be in"),
        ([str(src), *base, "--blend-words", "purple"], "do not occur"),
        ([str(src), "-i", str(tmp_path / "other.mp4"), *base], "two different inputs"),
        ([*base], "no input given"),
        ([str(src), *base, "--model", str(tmp_path / "nomodel")], "model folder not found"),
    ]
    (tmp_path / "noframes").mkdir()
    (tmp_path / "junk.webm").write_bytes(b"\x00" * 1000)
    for argv, message in cases:
        assert main(["edit", *argv]) == 2, argv
        assert message in capsys.readouterr().err, argv


def test_stream_and_generate_errors_before_any_model_loads(tmp_path, capsys, no_model):
    src = _video(tmp_path / "in.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"not a video" * 100)
    (tmp_path / "empty.mp4").write_bytes(b"")
    mem = tmp_path / "mem"
    mem.mkdir()
    (mem / "temporal_config.json").write_text(json.dumps({"kind": "memory"}))
    out = ["-o", str(tmp_path / "x.mp4")]
    cases = [
        (["stream", "--input", str(tmp_path / "junk.mp4"), "--prompt", "x", *out], "cannot open video"),
        (["stream", "--input", str(tmp_path / "empty.mp4"), "--prompt", "x", *out], "cannot open video"),
        (["stream", "--input", str(tmp_path / "none.mp4"), "--prompt", "x", *out], "not found"),
        (["stream", "--input", "/dev/video77", "--prompt", "x", *out], "cannot open video device"),
        (["stream", "--input", "-", "--prompt", "x", *out], "--input-size"),
        (["stream", str(src), "--prompt", " ", *out], "prompt is empty"),
        (["stream", str(src), "--prompt", " ".join(["red"] * 80), *out], "limit of 75"),
        (["stream", str(src), "--prompt", "x", "--size", "100", *out], "multiple of"),
        (["stream", str(src), "--prompt", "x", "--memory", str(mem), "--temporal", "window", *out], "cannot also"),
        (["stream", str(src), "--prompt", "x", "--set", "temporal.kind=nope", *out], "unknown temporal module"),
        (["generate", "--prompt", " ".join(["red"] * 80), *out], "drop"),
        (["generate", "--size", "100", *out], "multiple of"),
        (["generate", "--image", str(tmp_path / "none.png"), *out], "not found"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv


def test_edit_default_model_non_square_positional_or_option(tmp_path, capsys):
    src = _video(tmp_path / "in.mp4", fps=12)
    out = tmp_path / "out.mp4"
    assert main(["edit", "-i", str(src), "--source-prompt", "a red circle", "--target-prompt", "a blue circle",
                 "--frames", "4", "--steps", "2", "--size", "64x96", "--stride", "2", "-o", str(out)]) == 0
    assert read_video(out, height=64, width=96).shape == (4, 64, 96, 3)
    assert (tmp_path / "out.strip.png").exists()
    err = capsys.readouterr().err
    assert "encode" in err and "sampling" in err and "decode" in err
    import av

    with av.open(str(out)) as c:
        assert abs(float(c.streams.video[0].average_rate) - 6) < 0.1  # the input's 12 fps / stride 2


def test_edit_model_folder(tiny_model_dir, tmp_path):
    src = _video(tmp_path / "in.gif", n=4, h=32, w=32)
    out = tmp_path / "out.gif"
    assert main(["edit", str(src), "--model", str(tiny_model_dir), "--size", "32", "--frames", "4", "--steps", "2",
                 "--source-prompt", "a red circle", "--target-prompt", "a blue circle", "-o", str(out)]) == 0
    assert out.exists()


def test_edit_second_process_compiles_nothing(tmp_path):
    """The compiled edit step goes to the persistent cache (no host callback in it): a second
    run of the same command in a fresh process compiles nothing."""
    src = _video(tmp_path / "in.mp4", n=2, h=64, w=64)
    script = (
        "import json, sys, jax\n"
        "from jax import monitoring\n"
        "n = {'compiles': 0, 'hits': 0}\n"
        "def on_duration(event, secs, **kw):\n"
        "    n['compiles'] += event == '/jax/core/compile/backend_compile_duration'\n"
        "def on_event(event, **kw):\n"
        "    n['hits'] += event == '/jax/compilation_cache/cache_hits'\n"
        "monitoring.register_event_duration_secs_listener(on_duration)\n"
        "monitoring.register_event_listener(on_event)\n"
        "from jaxvid.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "print(json.dumps({'rc': rc, 'compiled': n['compiles'] - n['hits']}))\n"
    )
    argv = [sys.executable, "-c", script, "edit", str(src), "--source-prompt", "a red circle", "--target-prompt",
            "a blue circle", "--frames", "2", "--steps", "2", "--size", "64", "-o", str(tmp_path / "o.mp4")]
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "cache")}
    runs = []
    for _ in range(2):
        r = subprocess.run(argv, capture_output=True, timeout=600, env=env)
        assert r.returncode == 0, r.stderr.decode()[-2000:]
        runs.append(json.loads(r.stdout.decode().strip().splitlines()[-1]))
    assert runs[0]["compiled"] > 0 and runs[1]["compiled"] == 0, runs


def test_stream_config_uses_the_builtin_preset_only_with_the_builtin_model(tmp_path):
    """The built-in model streams with its measured settings (configs/stream.py); a --model
    folder gets the paper's defaults; flags still win over either."""
    from configs.stream import BUILTIN
    from jaxvid.cli import parse
    from jaxvid.cli.stream import build_config
    from jaxvid.pipelines.svdiff import StreamConfig

    builtin = build_config(parse(["stream", "in.mp4", "--prompt", "x"])).stream
    assert {k: builtin[k] for k in BUILTIN} == BUILTIN
    paper = build_config(parse(["stream", "in.mp4", "--prompt", "x", "--model", str(tmp_path)])).stream
    assert paper.to_dict() == dataclasses.asdict(StreamConfig())
    assert build_config(parse(["stream", "in.mp4", "--prompt", "x", "--inversion", "lcm", "--steps", "3"])).stream.inversion == "lcm"


def test_stream_file_and_drop_policy(tmp_path, capsys):
    src = _video(tmp_path / "in.mp4", n=6, fps=10)
    out = tmp_path / "s.mp4"
    assert main(["stream", str(src), "--prompt", "a blue circle", "--steps", "2", "--size", "64", "-o", str(out)]) == 0
    assert len(read_video(out, height=64, width=64)) == 6
    err = capsys.readouterr().err
    assert "wrote 6 frames" in err and "at 10 fps" in err and "first frame in" in err
    assert "using the built-in model's trained memory module" in err
    assert main(["stream", "--input", str(src), "--prompt", "a blue circle", "--steps", "2", "--size", "48x80",
                 "--policy", "drop", "--temporal", "shift", "-o", str(tmp_path / "d.mp4")]) == 0
    err = capsys.readouterr().err
    assert "'drop' policy" in err and "temporal shift has no weights" in err
    assert _dims(tmp_path / "d.mp4") == (48, 80)  # not square


def test_stream_batch_writes_exactly_max_frames(tmp_path, capsys):
    src = _video(tmp_path / "in.mp4", n=8)
    out = tmp_path / "b.mp4"
    assert main(["stream", str(src), "--prompt", "a blue circle", "--steps", "3", "--stream-batch", "--size", "80x48",
                 "--guidance-mode", "rcfg", "--max-frames", "4", "-o", str(out)]) == 0
    assert "wrote 4 frames" in capsys.readouterr().err  # frames in flight are flushed, no more
    assert _dims(out) == (80, 48) and len(read_video(out, height=80, width=48)) == 4


def test_stream_raw_stdin_pipe_and_fps(tmp_path):
    frames = (np.random.default_rng(0).random((3, 48, 64, 3)) * 255).astype(np.uint8)
    out = tmp_path / "p.mp4"
    args = ["stream", "-i", "-", "--input-size", "48x64", "--size", "64", "--prompt", "a blue circle", "--steps", "2",
            "--inversion", "noise"]
    r = _run_cli([*args, "--fps", "15", "-o", str(out)], frames.tobytes())
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert len(read_video(out, height=64, width=64)) == 3
    import av

    with av.open(str(out)) as c:
        assert abs(float(c.streams.video[0].average_rate) - 15) < 0.1
    # a pipe that ends mid-frame: every complete frame is written, and the error says why
    r = _run_cli([*args, "-o", str(tmp_path / "q.gif")], frames.tobytes()[:-100])
    assert r.returncode == 2 and b"middle of a frame" in r.stderr
    assert b"no frame rate; writing at 30 fps" in r.stderr
    assert Image.open(tmp_path / "q.gif").n_frames == 2


@pytest.mark.slow  # known issue: in the cold parallel suite on 2 busy cores the interrupted process has
# not exited within 300 s (twice); alone it passes in 17 s. Kept in `make test-slow` until understood.
def test_stream_ctrl_c_keeps_every_processed_frame(tmp_path):
    import signal
    import time

    out, log = tmp_path / "c.gif", tmp_path / "err.txt"
    with open(log, "wb") as err:  # -X faulthandler: SIGABRT makes a hung child print every thread's stack
        p = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "jaxvid.cli", "stream", "--input", "-",
                              "--input-size", "64x64", "--size", "64", "--prompt", "a blue circle", "--steps", "2",
                              "--inversion", "noise", "-o", str(out)], stdin=subprocess.PIPE, stderr=err)
        p.stdin.write((np.random.default_rng(0).random((3, 64, 64, 3)) * 255).astype(np.uint8).tobytes())
        p.stdin.flush()  # the pipe stays open: the stream is live when Ctrl-C arrives
        deadline = time.time() + 300
        while b"3frame" not in log.read_bytes() and time.time() < deadline and p.poll() is None:
            time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout=60)  # it exits in ~1 s
        except subprocess.TimeoutExpired:
            status = Path(f"/proc/{p.pid}/status")
            sig = [ln for ln in status.read_text().splitlines() if ln.startswith("Sig")] if status.exists() else []
            p.send_signal(signal.SIGABRT)
            p.wait(timeout=60)
            pytest.fail(f"no exit 60 s after SIGINT; child's signal masks {sig}; its stderr:\n"
                        + log.read_bytes()[-6000:].decode(errors="replace"))
        finally:
            p.stdin.close()
    assert p.returncode == 0, log.read_bytes()[-2000:]
    assert b"interrupted" in log.read_bytes()
    assert Image.open(out).n_frames == 3
