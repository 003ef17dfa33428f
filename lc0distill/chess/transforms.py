"""Board symmetries lc0 uses for canonical input formats (>= 3), on squares and on 64-bit bitboards.

Squares and bitboard bits follow lc0 and python-chess: square = 8 * rank + file, a1 = 0, h8 = 63.
The three transforms are involutions. Encoding applies them in the order flip, mirror, transpose;
decoding undoes them in the reverse order.
"""

from __future__ import annotations

import numpy as np

NO_TRANSFORM = 0
FLIP = 1  # files a <-> h
MIRROR = 2  # ranks 1 <-> 8
TRANSPOSE = 4  # reflection in the a8-h1 anti-diagonal: (file f, rank r) -> (7 - r, 7 - f)
TRANSFORM_MASK = FLIP | MIRROR | TRANSPOSE

_ALL_ONES = (1 << 64) - 1


def transform_square(square: int, transform: int) -> int:
    """Apply `transform` to one square (encoding direction: flip, then mirror, then transpose)."""
    file, rank = square & 7, square >> 3
    if transform & FLIP:
        file = 7 - file
    if transform & MIRROR:
        rank = 7 - rank
    if transform & TRANSPOSE:
        file, rank = 7 - rank, 7 - file
    return 8 * rank + file


def untransform_square(square: int, transform: int) -> int:
    """Undo `transform` on one square (transpose, then mirror, then flip)."""
    file, rank = square & 7, square >> 3
    if transform & TRANSPOSE:
        file, rank = 7 - rank, 7 - file
    if transform & MIRROR:
        rank = 7 - rank
    if transform & FLIP:
        file = 7 - file
    return 8 * rank + file


def _square_permutation(transform: int) -> np.ndarray:
    return np.array([transform_square(s, transform) for s in range(64)], dtype=np.int64)


# PERMUTATIONS[t][s] = where square s goes under transform t.
PERMUTATIONS = np.stack([_square_permutation(t) for t in range(8)])


# BYTE_BIT_REVERSAL[b] = byte b with its 8 bits in reverse order.
BYTE_BIT_REVERSAL = np.array([int(f"{b:08b}"[::-1], 2) for b in range(256)], dtype=np.uint8)


def reverse_bits_in_bytes(mask: int) -> int:
    """lc0's ReverseBitsInBytes: mirrors files of a bitboard; also the bit order of stored planes."""
    return int.from_bytes(bytes(BYTE_BIT_REVERSAL[b] for b in mask.to_bytes(8, "little")), "little")


def reverse_bits_in_bytes_array(masks: np.ndarray) -> np.ndarray:
    """Vectorised reverse_bits_in_bytes over a uint64 array of any shape."""
    as_bytes = np.ascontiguousarray(masks, dtype="<u8").view(np.uint8)
    return BYTE_BIT_REVERSAL[as_bytes].view("<u8").reshape(masks.shape)


def transform_mask(mask: int, transform: int) -> int:
    """Apply `transform` to a 64-bit bitboard; all-empty and all-full boards are left as they are."""
    if transform == NO_TRANSFORM or mask == 0 or mask == _ALL_ONES:
        return mask
    out = 0
    perm = PERMUTATIONS[transform]
    bits = mask
    while bits:
        low = bits & -bits
        out |= 1 << int(perm[low.bit_length() - 1])
        bits ^= low
    return out


def untransform_mask(mask: int, transform: int) -> int:
    """Undo `transform` on a 64-bit bitboard."""
    if transform == NO_TRANSFORM or mask == 0 or mask == _ALL_ONES:
        return mask
    out = 0
    bits = mask
    while bits:
        low = bits & -bits
        out |= 1 << untransform_square(low.bit_length() - 1, transform)
        bits ^= low
    return out
