"""A numpy model of the in-kernel noise (csrc/ddpm/philox.h), independent of
the compiled code: Philox-4x32-10 on uint64 arrays, and the normal transform
replayed operation by operation in float32 (numpy rounds each +, -, *, /,
sqrt correctly and never fuses; the header's fused multiply-adds are
emulated exactly by fma32), so it must agree bit for bit with any backend
that follows the header; and the same transform in float64 with the library
log/sin/cos, to measure the float32 transform's error.
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


def fma32(a, b, c):
    """float32 a*b + c rounded once. The product is exact in float64 (24 + 24
    bits); the sum is formed with its exact error (TwoSum) and rounded to odd
    in float64, whose 29 spare bits make the final rounding to float32 the
    correct one."""
    a = np.asarray(a, np.float32).astype(np.float64)
    b = np.asarray(b, np.float32).astype(np.float64)
    c = np.asarray(c, np.float32).astype(np.float64)
    p = a * b
    s = p + c
    bv = s - p
    err = (p - (s - bv)) + (c - bv)
    inexact_even = (err != 0) & ((s.view(np.int64) & 1) == 0)
    s = np.where(inexact_even, np.nextafter(s, np.where(err > 0, np.inf, -np.inf)), s)
    return s.astype(np.float32)


def _c(hexstr):
    return f32(float.fromhex(hexstr))


def _uniform_f32(a):
    return fma32((a >> np.uint64(1)).astype(np.int32).astype(np.float32), f32(2.0 ** -31),
                 f32(2.0 ** -32))


def _minus_two_log_f32(u):
    bits = u.view(np.uint32)
    mantissa = bits & np.uint32(0x007FFFFF)
    above = mantissa > np.uint32(0x3504F3)
    m = (mantissa | np.where(above, np.uint32(0x3F000000), np.uint32(0x3F800000))).view(np.float32)
    e = (bits >> np.uint32(23)).astype(np.int32) - 127 + above.astype(np.int32)
    w = fma32(m, f32(-4), f32(4)) / (m + f32(1))
    w2 = w * w
    p = fma32(fma32(_c("0x1.31e2f8p-15"), w2, _c("0x1.995ebap-11")), w2, _c("0x1.55557ap-6"))
    log_m = fma32(w * w2, p, w)
    ef = e.astype(np.float32)
    return fma32(ef, _c("-0x1.62e43p+0"), fma32(ef, _c("0x1.05c61p-28"), log_m))


def _angle_parts(b):
    """(c, f) of the header's sincos_quadrant: quadrant c >> 30, offset f."""
    c = (b.astype(np.uint64) + np.uint64(0x20000000)) & np.uint64(MASK)
    low = (c & np.uint64(0x3FFFFFFF)).astype(np.int64) - 0x20000000
    f = low.astype(np.int32).astype(np.float32) * f32(2.0 ** -31)
    return c, f


def _sincos_quadrant_f32(b):
    c, f = _angle_parts(b)
    f2 = f * f
    ps = _c("-0x1.2d9bb6p-1")
    for k in ("0x1.465ec6p+1", "-0x1.4abbbap+2", "0x1.921fb6p+1"):
        ps = fma32(ps, f2, _c(k))
    sin_f = ps * f
    pc = _c("0x1.d9f7b8p-3")
    for k in ("-0x1.55c664p+0", "0x1.03c1dep+2", "-0x1.3bd3ccp+2"):
        pc = fma32(pc, f2, _c(k))
    cos_f = fma32(pc, f2, f32(1))
    swap = (c & np.uint64(0x40000000)) != 0
    s = np.where(swap, cos_f, sin_f).astype(np.float32)
    co = np.where(swap, sin_f, cos_f).astype(np.float32)
    sin_sign = (c & np.uint64(0x80000000)).astype(np.uint32)
    cos_sign = ((c + np.uint64(0x40000000)) & np.uint64(0x80000000)).astype(np.uint32)
    return (s.view(np.uint32) ^ sin_sign).view(np.float32), (co.view(np.uint32) ^ cos_sign).view(np.float32)


def philox_normal_f32(numel, seed, offset):
    """The exact float32 noise the kernels draw for elements 0..numel-1."""
    lane, words = element_bits(numel, seed, offset)
    a, b, is_first = _pair_words(lane, words)
    with np.errstate(all="ignore"):
        r = np.sqrt(_minus_two_log_f32(_uniform_f32(a)))
        s, c = _sincos_quadrant_f32(b)
        return np.where(is_first, r * c, r * s).astype(np.float32)


def philox_normal_f64(numel, seed, offset):
    """The same Box-Muller transform in float64 with libm, from the same float32
    uniforms u and angle offsets f the kernel forms (their float32 grid is part
    of the design, as in curand): what remains is the error of log, sqrt, sin
    and cos."""
    lane, words = element_bits(numel, seed, offset)
    a, b, is_first = _pair_words(lane, words)
    u = _uniform_f32(a).astype(np.float64)
    c, f = _angle_parts(b)
    theta = np.pi * ((c >> np.uint64(30)).astype(np.float64) / 2 + f.astype(np.float64))
    r = np.sqrt(-2.0 * np.log(u))
    return np.where(is_first, r * np.cos(theta), r * np.sin(theta))
