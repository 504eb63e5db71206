"""The ``jaxvid`` command end to end (in-process, through ``main``)."""

import numpy as np
from PIL import Image

from jaxvid.cli import main


def test_generate_default_model(tmp_path, capsys):
    out = tmp_path / "a.png"
    assert main(["generate", "--steps", "2", "-o", str(out)]) == 0
    img = np.asarray(Image.open(out))
    assert img.shape == (128, 128, 3)
    assert "RANDOM" in capsys.readouterr().err


def test_generate_model_folder_img2img_and_lora(tiny_model_dir, tmp_path):
    src = tmp_path / "in.png"
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(src)
    out = tmp_path / "b.png"
    assert main(["generate", "--model", str(tiny_model_dir), "--image", str(src), "--strength", "0.5",
                 "--num-images", "2", "-o", str(out)]) == 0
    assert np.asarray(Image.open(out)).shape == (32, 64, 3)


def test_errors_are_readable(tmp_path, capsys):
    assert main(["generate", "--model", str(tmp_path / "missing"), "-o", str(tmp_path / "x.png")]) == 2
    assert "model folder not found" in capsys.readouterr().err
    assert main(["generate", "--size", "100", "-o", str(tmp_path / "x.png")]) == 2
    assert "multiple of" in capsys.readouterr().err


def _video(path, n=8, size=64):
    from jaxvid.data.video import write_video

    f = np.zeros((n, size, size + 32, 3), np.uint8)
    f[..., 0] = np.linspace(0, 255, n).astype(np.uint8)[:, None, None]
    return write_video(path, f, fps=8)


def test_edit_default_model(tmp_path, capsys):
    src = _video(tmp_path / "in.mp4")
    out = tmp_path / "out.mp4"
    assert main(["edit", str(src), "--source-prompt", "a red circle", "--target-prompt", "a blue circle",
                 "--frames", "6", "--steps", "2", "-o", str(out)]) == 0
    from jaxvid.data.video import read_video

    assert read_video(out, height=128, width=128).shape == (6, 128, 128, 3)
    assert (tmp_path / "out.strip.png").exists()
    err = capsys.readouterr().err
    assert "encode" in err and "sampling" in err and "decode" in err


def test_edit_model_folder(tiny_model_dir, tmp_path):
    src = _video(tmp_path / "in.gif", n=4, size=32)
    out = tmp_path / "out.gif"
    assert main(["edit", str(src), "--model", str(tiny_model_dir), "--size", "32", "--frames", "4", "--steps", "2",
                 "--source-prompt", "a red circle", "--target-prompt", "a blue circle", "-o", str(out)]) == 0
    assert out.exists()


def test_edit_bad_inputs(tmp_path, capsys):
    src = _video(tmp_path / "in.mp4")
    base = ["--source-prompt", "a red circle", "--target-prompt", "a blue circle", "-o", str(tmp_path / "o.mp4")]
    assert main(["edit", str(tmp_path / "missing.mp4"), *base]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "junk.webm").write_bytes(b"\x00" * 1000)
    assert main(["edit", str(tmp_path / "junk.webm"), *base]) == 2
    assert "cannot" in capsys.readouterr().err
    (tmp_path / "noframes").mkdir()
    assert main(["edit", str(tmp_path / "noframes"), *base]) == 2
    assert "no frames" in capsys.readouterr().err
    assert main(["edit", str(src), "--source-prompt", "", "--target-prompt", "x", "-o", str(tmp_path / "o.mp4")]) == 2
    assert "empty" in capsys.readouterr().err
    long = " ".join(["blue circle"] * 50)
    assert main(["edit", str(src), "--source-prompt", "a", "--target-prompt", long, "-o", str(tmp_path / "o.mp4")]) == 2
    assert "limit" in capsys.readouterr().err


def test_stream_file_and_drop_policy(tmp_path, capsys):
    src = _video(tmp_path / "in.mp4", n=6)
    out = tmp_path / "s.mp4"
    assert main(["stream", "--input", str(src), "--prompt", "a blue circle", "--steps", "2", "-o", str(out)]) == 0
    from jaxvid.data.video import read_video

    assert len(read_video(out, height=128, width=128)) == 6
    assert "wrote 6 frames" in capsys.readouterr().err
    assert main(["stream", "--input", str(src), "--prompt", "a blue circle", "--steps", "2", "--policy", "drop",
                 "--temporal", "window", "-o", str(tmp_path / "d.mp4")]) == 0
    err = capsys.readouterr().err
    assert "'drop' policy" in err


def _run_cli(args, stdin: bytes):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "jaxvid.cli", *args], input=stdin, capture_output=True, timeout=600)


def test_stream_raw_stdin_pipe(tmp_path):
    frames = (np.random.default_rng(0).random((3, 48, 64, 3)) * 255).astype(np.uint8)
    out = tmp_path / "p.gif"
    r = _run_cli(["stream", "--input", "-", "--input-size", "48x64", "--prompt", "a blue circle", "--steps", "2",
                  "--inversion", "noise", "-o", str(out)], frames.tobytes())
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert Image.open(out).n_frames == 3
    # a pipe that ends mid-frame: every complete frame is written, and the error says why
    r = _run_cli(["stream", "--input", "-", "--input-size", "48x64", "--prompt", "a blue circle", "--steps", "2",
                  "--inversion", "noise", "-o", str(tmp_path / "q.gif")], frames.tobytes()[:-100])
    assert r.returncode == 2 and b"middle of a frame" in r.stderr
    assert Image.open(tmp_path / "q.gif").n_frames == 2


def test_stream_bad_inputs(tmp_path, capsys):
    assert main(["stream", "--input", "/dev/video77", "--prompt", "x", "-o", str(tmp_path / "x.mp4")]) == 2
    assert "cannot open video device" in capsys.readouterr().err
    assert main(["stream", "--input", "-", "--prompt", "x", "-o", str(tmp_path / "x.mp4")]) == 2
    assert "--input-size" in capsys.readouterr().err
    assert main(["stream", "--input", str(tmp_path / "none.mp4"), "--prompt", "x", "-o", str(tmp_path / "x.mp4")]) == 2
    assert "not found" in capsys.readouterr().err


def test_stream_batch_and_rcfg_cli(tmp_path, capsys):
    src = _video(tmp_path / "in.mp4", n=5)
    out = tmp_path / "b.mp4"
    assert main(["stream", "--input", str(src), "--prompt", "a blue circle", "--steps", "3", "--stream-batch",
                 "--guidance-mode", "rcfg", "-o", str(out)]) == 0
    assert "wrote 5 frames" in capsys.readouterr().err  # frames in flight are flushed at the end


def test_stream_ctrl_c_keeps_every_processed_frame(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out, log = tmp_path / "c.gif", tmp_path / "err.txt"
    with open(log, "wb") as err:
        p = subprocess.Popen([sys.executable, "-m", "jaxvid.cli", "stream", "--input", "-", "--input-size", "64x64",
                              "--prompt", "a blue circle", "--steps", "2", "--inversion", "noise", "-o", str(out)],
                             stdin=subprocess.PIPE, stderr=err)
        p.stdin.write((np.random.default_rng(0).random((3, 64, 64, 3)) * 255).astype(np.uint8).tobytes())
        p.stdin.flush()  # the pipe stays open: the stream is live when Ctrl-C arrives
        deadline = time.time() + 300
        while b"3frame" not in log.read_bytes() and time.time() < deadline and p.poll() is None:
            time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        p.wait(timeout=120)
        p.stdin.close()
    assert p.returncode == 0, log.read_bytes()[-2000:]
    assert b"interrupted" in log.read_bytes()
    assert Image.open(out).n_frames == 3
