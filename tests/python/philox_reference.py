"""A numpy model of the in-kernel noise (csrc/ddpm/philox.h), independent of
the compiled code: Philox-4x32-10 on uint64 arrays, and the normal transform
replayed operation by operation in float32 (numpy rounds each +, -, *, /,
sqrt correctly and never fuses), so it must agree bit for bit with any
backend that follows the header; and the same transform in float64 with the
library log/sin/cos, to measure the float32 transform's error.
"""
import numpy as np

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK = 0xFFFFFFFF
ROW, BLOCK = 256, 1024


def philox4x32_10(ctr, key):
    """ctr: four uint64 arrays of 32-bit words; key: two ints. Returns four arrays."""
    x, y, z, w = (np.asarray(c, dtype=np.uint64) for c in ctr)
    k0, k1 = int(key[0]), int(key[1])
    for _ in range(10):
        p0 = np.uint64(M0) * x
        p1 = np.uint64(M1) * z
        hi0, lo0 = p0 >> np.uint64(32), p0 & np.uint64(MASK)
        hi1, lo1 = p1 >> np.uint64(32), p1 & np.uint64(MASK)
        x, y, z, w = hi1 ^ y ^ np.uint64(k0), lo1, hi0 ^ w ^ np.uint64(k1), lo0
        k0 = (k0 + W0) & MASK
        k1 = (k1 + W1) & MASK
    return x, y, z, w


def element_bits(numel, seed, offset):
    """(subsequence, lane) of every element and the 4 Philox words of each."""
    seed &= (1 << 64) - 1
    e = np.arange(numel, dtype=np.int64)
    sub = (e // BLOCK) * ROW + e % ROW
    lane = (e % BLOCK) // ROW
    block = offset // 4
    sub_u = sub.astype(np.uint64)
    ctr = (np.full(numel, block & MASK, np.uint64), np.full(numel, block >> 32, np.uint64),
           sub_u & np.uint64(MASK), sub_u >> np.uint64(32))
    words = philox4x32_10(ctr, (seed & MASK, seed >> 32))
    return lane, words


def _pair_words(lane, words):
    x, y, z, w = words
    first = lane < 2
    a = np.where(first, x, z)
    b = np.where(first, y, w)
    return a, b, (lane % 2) == 0


f32 = np.float32


def _minus_two_log_f32(u):
    bits = u.view(np.uint32)
    e = (bits >> np.uint32(23)).astype(np.int32) - 127
    m = ((bits & np.uint32(0x007FFFFF)) | np.uint32(0x3F800000)).view(np.float32)
    above = m > f32(float.fromhex("0x1.6a09e6p+0"))
    m = np.where(above, m * f32(0.5), m).astype(np.float32)
    e = e + above.astype(np.int32)
    s = (m - f32(1)) / (m + f32(1))
    s2 = s * s
    p = f32(float.fromhex("0x1.c71c72p-3"))
    p = p * s2 + f32(float.fromhex("0x1.24924ap-2"))
    p = p * s2 + f32(float.fromhex("0x1.99999ap-2"))
    p = p * s2 + f32(float.fromhex("0x1.555556p-1"))
    log_m = s * f32(2) + (s * s2) * p
    ef = e.astype(np.float32)
    log_u = ef * f32(float.fromhex("0x1.62e4p-1")) + (ef * f32(float.fromhex("0x1.7f7d1cp-20")) + log_m)
    return log_u * f32(-2)


def _sincospi_f32(v):
    n = (v * f32(2) + f32(12582912.0)) - f32(12582912.0)
    f = v - n * f32(0.5)
    f2 = f * f
    ps = f32(float.fromhex("0x1.507834p-4"))
    for c in ("-0x1.32d2ccp-1", "0x1.466bc6p+1", "-0x1.4abbcep+2", "0x1.921fb6p+1"):
        ps = ps * f2 + f32(float.fromhex(c))
    sin_f = ps * f
    pc = f32(float.fromhex("-0x1.a6d1f2p-6"))
    for c in ("0x1.e1f506p-3", "-0x1.55d3c8p+0", "0x1.03c1f0p+2", "-0x1.3bd3ccp+2"):
        pc = pc * f2 + f32(float.fromhex(c))
    cos_f = pc * f2 + f32(1)
    q = n.astype(np.int32).astype(np.uint32) & np.uint32(3)
    swap = (q & np.uint32(1)) != 0
    s = np.where(swap, cos_f, sin_f).astype(np.float32)
    c = np.where(swap, sin_f, cos_f).astype(np.float32)
    sin_sign = (q & np.uint32(2)) << np.uint32(30)
    cos_sign = ((q + np.uint32(1)) & np.uint32(2)) << np.uint32(30)
    return (s.view(np.uint32) ^ sin_sign).view(np.float32), (c.view(np.uint32) ^ cos_sign).view(np.float32)


def philox_normal_f32(numel, seed, offset):
    """The exact float32 noise the kernels draw for elements 0..numel-1."""
    lane, words = element_bits(numel, seed, offset)
    a, b, is_first = _pair_words(lane, words)
    with np.errstate(all="ignore"):
        u = (a >> np.uint64(1)).astype(np.int32).astype(np.float32) * f32(2.0 ** -31) + f32(2.0 ** -32)
        v = b.astype(np.uint32).view(np.int32).astype(np.float32) * f32(2.0 ** -31)
        r = np.sqrt(_minus_two_log_f32(u))
        s, c = _sincospi_f32(v)
        return np.where(is_first, r * c, r * s).astype(np.float32)


def philox_normal_f64(numel, seed, offset):
    """The same Box-Muller transform in float64 with libm, from the same float32
    uniforms u and angles v the kernel forms (their float32 grid is part of the
    design, as in curand): what remains is the error of log, sqrt and sincospi."""
    lane, words = element_bits(numel, seed, offset)
    a, b, is_first = _pair_words(lane, words)
    u = ((a >> np.uint64(1)).astype(np.int32).astype(np.float32) * f32(2.0 ** -31)
         + f32(2.0 ** -32)).astype(np.float64)
    v = (b.astype(np.uint32).view(np.int32).astype(np.float32) * f32(2.0 ** -31)).astype(np.float64)
    r = np.sqrt(-2.0 * np.log(u))
    return np.where(is_first, r * np.cos(np.pi * v), r * np.sin(np.pi * v))
