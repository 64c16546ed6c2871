"""Deterministic bijections from the generator's int ids to realistic user and item ids.

Three id modes (:data:`ID_MODES`):

========== ============================================ =============================================
mode       users                                        items
========== ============================================ =============================================
``int``    the generator's ids, unchanged               the generator's ids, unchanged
``long``   63-bit positive longs, all above ``2**32``   63-bit positive longs, all above ``2**32``
``string`` version-4 UUIDs, ``"8-4-4-4-12"`` lower hex  SKUs, ``"SKU-"`` and 8 upper-case hex digits
========== ============================================ =============================================

Each is a pure function of the seed and the int id, computed with numpy (no
Python loop over ids), and injective by construction, not by luck: the low 32
bits of every long, of every UUID and the 8 hex digits of every SKU are a keyed
bijection of the 32-bit id (xor with a key drawn from the seed, then the
invertible ``lowbias32`` integer hash). The other bits of longs and UUIDs are
a keyed 64-bit hash (the ``splitmix64`` finaliser), so the ids look random.
Users and items use different keys.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from als_spark.errors import ConfigError
from als_spark.synthetic.sampling import check_int

__all__ = ["ID_MODES", "encode_item_ids", "encode_user_ids"]

#: The id modes of :func:`encode_user_ids`, :func:`encode_item_ids` and :func:`~als_spark.synthetic.interactions`.
ID_MODES = ("int", "long", "string")

_SALT_USERS = 0x75736572  # "user": keys of user ids
_SALT_ITEMS = 0x6974656D  # "item": keys of item ids
_MASK32 = np.uint64(0xFFFF_FFFF)
_HEX_LOWER = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_HEX_UPPER = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)
_UUID_VERSION_CLEAR = np.uint64(0xFFFF_FFFF_FFFF_0FFF)  # the version nibble of the high 64 bits
_UUID_VERSION_4 = np.uint64(0x4000)
_UUID_VARIANT_CLEAR = np.uint64(0x3FFF_FFFF_FFFF_FFFF)  # the variant bits of the low 64 bits
_UUID_VARIANT_RFC = np.uint64(0x8000_0000_0000_0000)
_UUID_GROUPS = ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))  # hex digits of the five groups
_SKU_PREFIX = np.frombuffer(b"SKU-", dtype=np.uint8)

#: Formats string ids from ``(ids as uint64, their keyed 32-bit bijection, the keys)``.
_Strings = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def encode_user_ids(user_id: np.ndarray, *, ids: str, seed: int = 42) -> np.ndarray:
    """Map the generator's user ids to user ids of mode ``ids`` (see :data:`ID_MODES`).

    Parameters
    ----------
    user_id : array of int
        User ids in ``[0, 2**32)``.
    ids : {"int", "long", "string"}
        ``int`` returns a copy of ``user_id``; ``long`` int64 values in
        ``[2**32, 2**63)``; ``string`` an object array of version-4 UUID
        strings (``str(uuid.UUID(s)) == s``).
    seed : int, optional
        Keys of the bijection; default 42.

    Returns
    -------
    :class:`numpy.ndarray`
        One id per input id; equal inputs give equal outputs, distinct inputs distinct outputs.
    """
    return _encode(user_id, ids, seed, _SALT_USERS, "user_id", _uuid_strings)


def encode_item_ids(item_id: np.ndarray, *, ids: str, seed: int = 42) -> np.ndarray:
    """Map the generator's item ids to item ids of mode ``ids`` (see :data:`ID_MODES`).

    As :func:`encode_user_ids`, but ``string`` gives SKUs such as ``"SKU-3F9A0C12"``
    (``"SKU-"`` and 8 upper-case hex digits) and the keys differ from the users'.
    """
    return _encode(item_id, ids, seed, _SALT_ITEMS, "item_id", _sku_strings)


def _encode(values: np.ndarray, ids: str, seed: int, salt: int, name: str, strings: _Strings) -> np.ndarray:
    if ids not in ID_MODES:
        raise ConfigError(f"ids must be one of {', '.join(ID_MODES)}, got {ids!r}")
    seed = check_int("seed", seed, 0, None)
    array = np.asarray(values)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise ConfigError(f"{name} must be a one-dimensional array of integers, got dtype {array.dtype}")
    if array.size and (int(array.min()) < 0 or int(array.max()) > int(_MASK32)):
        raise ConfigError(f"{name} must be in [0, 2**32), got values in [{array.min()}, {array.max()}]")
    if ids == "int":
        return array.copy()
    keys = np.random.SeedSequence([salt, seed]).generate_state(3, dtype=np.uint64)
    x = array.astype(np.uint64)
    low = _permute32(x, keys[0])
    if ids == "long":
        high = (_mix64(x ^ keys[1]) >> np.uint64(33)) | np.uint64(1)  # 31 bits, never 0
        return ((high << np.uint64(32)) | low).astype(np.int64)
    return strings(x, low, keys)


def _mix64(x: np.ndarray) -> np.ndarray:
    """The ``splitmix64`` finaliser: a bijection of uint64 (xor-shifts and odd multipliers wrap)."""
    x = x ^ (x >> np.uint64(30))
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _permute32(x: np.ndarray, key: np.uint64) -> np.ndarray:
    """A keyed bijection of ``[0, 2**32)``: xor with the key's low bits, then ``lowbias32``."""
    x = x ^ (key & _MASK32)
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x7FEB352D)) & _MASK32  # < 2**64 before the mask: no wrap-around
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(0x846CA68B)) & _MASK32
    x ^= x >> np.uint64(16)
    return x


def _hex_digits(raw: np.ndarray, alphabet: np.ndarray) -> np.ndarray:
    """``(n, k)`` bytes as ``(n, 2k)`` ASCII hex digits, most significant nibble first."""
    digits = np.empty((raw.shape[0], 2 * raw.shape[1]), dtype=np.uint8)
    digits[:, 0::2] = alphabet[raw >> 4]
    digits[:, 1::2] = alphabet[raw & 15]
    return digits


def _as_strings(chars: np.ndarray) -> np.ndarray:
    """``(n, w)`` ASCII bytes as an object array of ``n`` strings of length ``w``."""
    width = chars.shape[1]
    return np.ascontiguousarray(chars).view(f"S{width}").ravel().astype(f"U{width}").astype(object)


def _uuid_strings(x: np.ndarray, low: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Version-4 UUIDs whose last 32 bits are ``low`` (so distinct ``low`` give distinct UUIDs)."""
    high = (_mix64(x ^ keys[1]) & _UUID_VERSION_CLEAR) | _UUID_VERSION_4
    middle = (_mix64(x ^ keys[2]) & ~_MASK32 & _UUID_VARIANT_CLEAR) | _UUID_VARIANT_RFC
    raw = np.stack([high, middle | low], axis=1).astype(">u8").view(np.uint8).reshape(x.size, 16)
    digits = _hex_digits(raw, _HEX_LOWER)
    chars = np.full((x.size, 36), ord("-"), dtype=np.uint8)
    for group, (lo, hi) in enumerate(_UUID_GROUPS):
        chars[:, lo + group : hi + group] = digits[:, lo:hi]
    return _as_strings(chars)


def _sku_strings(x: np.ndarray, low: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``"SKU-"`` and the 8 upper-case hex digits of ``low``."""
    raw = low.astype(">u4").view(np.uint8).reshape(x.size, 4)
    chars = np.empty((x.size, 12), dtype=np.uint8)
    chars[:, :4] = _SKU_PREFIX
    chars[:, 4:] = _hex_digits(raw, _HEX_UPPER)
    return _as_strings(chars)
