"""Reads the QR code in an SVG (stdin) with zxing-cpp, a third-party
decoder, and prints its text: the account page's QR code must say the
otpauth URI the page also links. The SVG is the qrcode crate's: one path
of `M{x} {y}h{w}v{h}H{x}V{y}` rectangles in a viewBox of modules; it is
drawn here into a grayscale bitmap, four modules of quiet zone around."""
import re
import sys

import zxingcpp

svg = sys.stdin.read()
w, h = (int(v) for v in re.search(r'viewBox="0 0 (\d+) (\d+)"', svg).groups())
d = re.search(r'<path[^>]* d="([^"]*)"', svg).group(1)
pad, px = 4, 4
W, H = (w + 2 * pad) * px, (h + 2 * pad) * px
img = bytearray([255]) * (W * H)
for x, y, rw, rh in re.findall(r"M(\d+) (\d+)h(\d+)v(\d+)H\d+V\d+", d):
    x, y, rw, rh = int(x), int(y), int(rw), int(rh)
    for yy in range((y + pad) * px, (y + rh + pad) * px):
        start = yy * W + (x + pad) * px
        img[start : start + rw * px] = bytes(rw * px)
found = zxingcpp.read_barcodes(memoryview(img).cast("B", (H, W)))
print(found[0].text if found else "")
