"""Minimal PNG output with no imaging dependency: a grayscale/RGB uint8
tensor to a PNG file, and a line plot rasterized into such a tensor."""
import struct
import zlib

import torch


def write_png(path, image):
    """image: uint8 tensor [H, W] (gray) or [H, W, 3] (RGB)."""
    image = image.detach().to("cpu", torch.uint8).contiguous()
    height, width = image.shape[:2]
    color_type = 2 if image.dim() == 3 else 0
    rows = image.view(height, -1).numpy()
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(tag, data):
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def image_grid(images, columns, pad=1, scale=4, value=1.0):
    """images [N, H, W] in [0, 1] -> a grid [rows*(H+pad)*scale, ...] uint8, upscaled."""
    n, h, w = images.shape
    rows = -(-n // columns)
    grid = torch.full((rows * (h + pad) + pad, columns * (w + pad) + pad), value)
    for k in range(n):
        r, c = divmod(k, columns)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = images[k]
    grid = grid.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
    return (grid.clamp(0, 1) * 255).round().to(torch.uint8)


def line_plot(series, width=640, height=360, margin=40):
    """A white RGB image with each series [(values, (r, g, b)), ...] drawn as a polyline
    over a shared y range, with a frame and tick marks every 10% of the x axis."""
    img = torch.full((height, width, 3), 255, dtype=torch.uint8)
    all_values = torch.cat([torch.as_tensor(v, dtype=torch.float64) for v, _ in series])
    lo, hi = all_values.min().item(), all_values.max().item()
    hi = hi if hi > lo else lo + 1

    def to_px(i, n, v):
        x = margin + (width - 2 * margin) * i / max(n - 1, 1)
        y = height - margin - (height - 2 * margin) * (v - lo) / (hi - lo)
        return x, y

    img[margin:height - margin + 1, margin] = 0
    img[height - margin, margin:width - margin + 1] = 0
    for k in range(11):
        x = int(margin + (width - 2 * margin) * k / 10)
        img[height - margin:height - margin + 5, x] = 0
    for values, color in series:
        values = torch.as_tensor(values, dtype=torch.float64)
        n = len(values)
        for i in range(n - 1):
            x0, y0 = to_px(i, n, values[i].item())
            x1, y1 = to_px(i + 1, n, values[i + 1].item())
            steps = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
            for s in range(steps + 1):
                x = int(round(x0 + (x1 - x0) * s / steps))
                y = int(round(y0 + (y1 - y0) * s / steps))
                if 0 <= y < height and 0 <= x < width:
                    img[max(y - 1, 0):y + 1, x] = torch.tensor(color, dtype=torch.uint8)
    return img


# A 5x7 bitmap font, for panel labels: the characters the demo's labels use
_GLYPHS = {
    "A": (" ### ", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"),
    "D": ("#### ", "#   #", "#   #", "#   #", "#   #", "#   #", "#### "),
    "E": ("#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#####"),
    "H": ("#   #", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"),
    "I": ("#####", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "#####"),
    "L": ("#    ", "#    ", "#    ", "#    ", "#    ", "#    ", "#####"),
    "M": ("#   #", "## ##", "# # #", "# # #", "#   #", "#   #", "#   #"),
    "O": (" ### ", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "),
    "P": ("#### ", "#   #", "#   #", "#### ", "#    ", "#    ", "#    "),
    "R": ("#### ", "#   #", "#   #", "#### ", "# #  ", "#  # ", "#   #"),
    "S": (" ####", "#    ", "#    ", " ### ", "    #", "    #", "#### "),
    "T": ("#####", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  "),
    "U": ("#   #", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "),
    "-": ("     ", "     ", "     ", "#####", "     ", "     ", "     "),
    "(": ("  #  ", " #   ", "#    ", "#    ", "#    ", " #   ", "  #  "),
    ")": ("  #  ", "   # ", "    #", "    #", "    #", "   # ", "  #  "),
    " ": ("     ",) * 7,
    "0": (" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "),
    "1": ("  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "),
    "2": (" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"),
    "3": ("#### ", "    #", "    #", " ### ", "    #", "    #", "#### "),
    "4": ("   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "),
    "5": ("#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "),
    "6": (" ### ", "#    ", "#    ", "#### ", "#   #", "#   #", " ### "),
    "7": ("#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "),
    "8": (" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "),
    "9": (" ### ", "#   #", "#   #", " ####", "    #", "    #", " ### "),
}


def text_label(text, width, scale=3, margin=6):
    """A white strip [7*scale + 2*margin, width] uint8 with text in black,
    centred; characters: A D E H I L M O P R S T U, digits, space, - ( )."""
    text = text.upper()
    unknown = sorted(set(text) - set(_GLYPHS))
    if unknown:
        raise ValueError(f"text_label: no glyph for {unknown}")
    ink = torch.tensor([[[c == "#" for c in row] for row in _GLYPHS[ch]] for ch in text],
                       dtype=torch.bool)  # [len, 7, 5]
    spaced = torch.cat([ink, torch.zeros(len(text), 7, 1, dtype=torch.bool)], dim=2)
    line = spaced.permute(1, 0, 2).reshape(7, -1)
    line = line.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
    strip = torch.full((7 * scale + 2 * margin, width), 255, dtype=torch.uint8)
    w = min(line.shape[1], width)
    left = (width - w) // 2
    strip[margin:margin + 7 * scale, left:left + w][line[:, :w]] = 0
    return strip
