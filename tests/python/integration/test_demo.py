"""The main job in miniature: the demo trains, samples, writes its PNGs and
metrics; and the PNG writer produces files a decoder accepts."""
import json
import struct
import zlib

import pytest
import torch

from torch_ddpm.tools import png as _png


def test_png_roundtrip(tmp_path):
    img = (torch.arange(12 * 7 * 3) % 256).to(torch.uint8).view(12, 7, 3)
    path = tmp_path / "x.png"
    _png.write_png(str(path), img)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (7, 12)
    idat = data.index(b"IDAT")
    length = struct.unpack(">I", data[idat - 4:idat])[0]
    raw = zlib.decompress(data[idat + 4: idat + 4 + length])
    rows = [raw[r * (1 + 21) + 1:(r + 1) * (1 + 21)] for r in range(12)]
    assert b"".join(rows) == bytes(img.flatten().tolist())


def test_demo_runs_end_to_end(tmp_path):
    pytest.importorskip("sklearn", reason="the demo's data set ships with scikit-learn")
    from torch_ddpm.tools import demo
    import argparse

    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    args = parser.parse_args(["--out", str(tmp_path), "--steps", "60", "--timesteps", "40",
                              "--samples", "32", "--ddim-steps", "10", "--log-every", "30"])
    demo.run(args)
    for name in ("samples.png", "loss.png", "metrics.json"):
        assert (tmp_path / name).exists()
    # three labelled panels: a label strip above each 4-row grid of 8x8 digits
    width, height = struct.unpack(">II", (tmp_path / "samples.png").read_bytes()[16:24])
    grid_height = (2 * (8 + 1) + 1) * 4  # 32 samples in rows of 16, scale 4
    assert height == grid_height + 7 * 3 + 2 * 6
    metrics = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert set(metrics) == {"DDPM samples", "DDIM samples", "held-out real", "pure noise"}
    # the check itself separates real data from noise, so a broken sampler shows
    assert metrics["held-out real"]["frechet"] < 0.2 * metrics["pure noise"]["frechet"]
    assert metrics["held-out real"]["nn_dist"] < metrics["pure noise"]["nn_dist"]


def test_text_label_draws_each_glyph_where_it_belongs():
    strip = _png.text_label("DDPM (40 STEPS)", 400, scale=2, margin=3)
    assert strip.shape == (7 * 2 + 6, 400) and strip.dtype == torch.uint8
    ink = strip == 0
    assert ink.any() and not ink[:3].any() and not ink[-3:].any()  # inside the margins
    # "I" is a full top bar, a stem and a full bottom bar: 5 + 1 + 5 columns at scale 1
    i = _png.text_label("I", 6, scale=1, margin=0) == 0
    assert i[0, :5].all() and i[6, :5].all() and i[3, 2] and not i[3, 0]
    # different texts, different pictures (each character has its own glyph)
    assert not torch.equal(_png.text_label("DDPM", 60, 1, 0), _png.text_label("DDIM", 60, 1, 0))
    with pytest.raises(ValueError, match="no glyph"):
        _png.text_label("x?", 40)
