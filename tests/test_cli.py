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
