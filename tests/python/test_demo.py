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
    metrics = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert set(metrics) == {"DDPM samples", "DDIM samples", "held-out real", "pure noise"}
    # the check itself separates real data from noise, so a broken sampler shows
    assert metrics["held-out real"]["frechet"] < 0.2 * metrics["pure noise"]["frechet"]
    assert metrics["held-out real"]["nn_dist"] < metrics["pure noise"]["nn_dist"]
