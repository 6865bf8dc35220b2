"""Readers of the AEDAT event files of CIFAR10-DVS (AEDAT 2.0) and DVS128 Gesture (AEDAT 3.1).

Why refsnn parses these itself instead of using a package (checked on the package index):
``aedat`` decodes AEDAT 4 only, ``expelliarmus`` the Prophesee formats (DAT, EVT 2/3) only,
and ``tonic`` reads these data sets through its own download layout and pulls in a large
dependency tree (h5py, librosa, ...) for a few lines of ``np.frombuffer``. Both formats are
small and documented by iniVation (docs.inivation.com, "AEDAT file formats"):

AEDAT 2.0 (jAER; CIFAR10-DVS)
    header lines starting with ``#`` (the first is ``#!AER-DAT2.0``), then events of 8 bytes,
    big-endian: uint32 address, uint32 timestamp (microseconds). DVS128 address:
    bit 0 polarity (1 = OFF, 0 = ON: jAER's convention), bits 1-7 x, bits 8-14 y.
AEDAT 3.1 (cAER; DVS128 Gesture)
    header lines up to ``#!END-HEADER\\r\\n`` (the first is ``#!AER-DAT3.1``), then packets,
    little-endian: a 28-byte header (int16 eventType, int16 eventSource, int32 eventSize,
    int32 eventTSOffset, int32 eventTSOverflow, int32 eventCapacity, int32 eventNumber,
    int32 eventValid) and ``eventNumber`` events of ``eventSize`` bytes. Polarity events
    (type 1) are 8 bytes: uint32 data (bit 0 valid, bit 1 polarity 1 = ON, bits 2-16 y,
    bits 17-31 x) and int32 timestamp; the full time is ``eventTSOverflow << 31 | timestamp``.
    Packets of other types are skipped; invalid events are dropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .events import EVENT_DTYPE, check_events

POLARITY_EVENT = 1
PACKET_HEADER = np.dtype([("type", "<i2"), ("source", "<i2"), ("size", "<i4"), ("ts_offset", "<i4"),
                          ("ts_overflow", "<i4"), ("capacity", "<i4"), ("number", "<i4"), ("valid", "<i4")])


def _split_header(blob: bytes, path) -> tuple:
    """(version line, offset of the first data byte): header lines start with '#'."""
    if not blob.startswith(b"#!AER-DAT"):
        raise ValueError(f"{path}: not an AEDAT file (it must start with '#!AER-DAT'), got {blob[:16]!r}")
    version = blob[: blob.index(b"\n")].strip().decode("ascii", "replace")
    pos = 0
    while pos < len(blob) and blob[pos:pos + 1] == b"#":
        end = blob.find(b"\n", pos)
        if end < 0:
            raise ValueError(f"{path}: header line at byte {pos} has no end of line")
        line, pos = blob[pos:end + 1], end + 1
        if line.strip() == b"#!END-HEADER":  # AEDAT 3.1: binary data follow, whatever their first byte
            break
    return version, pos


def _events(t, x, y, p, height, width, path) -> np.ndarray:
    ev = np.empty(t.size, dtype=EVENT_DTYPE)
    ev["t"], ev["x"], ev["y"], ev["p"] = t, x, y, p
    return check_events(ev, height, width, name=str(path))


def parse_aedat2(blob: bytes, path="<bytes>", height: int = 128, width: int = 128) -> np.ndarray:
    """Events of an AEDAT 2.0 file with DVS128 addresses (see the module docstring)."""
    version, pos = _split_header(blob, path)
    if version != "#!AER-DAT2.0":
        raise ValueError(f"{path}: expected '#!AER-DAT2.0', got {version!r}")
    data = blob[pos:]
    if len(data) % 8:
        raise ValueError(f"{path}: {len(data)} data bytes is not a whole number of 8-byte events")
    words = np.frombuffer(data, dtype=">u4").astype(np.int64)
    addr, t = words[0::2], words[1::2]
    # DVS128 address: bit 0 polarity (1 = OFF), bits 1-7 x, bits 8-14 y
    return _events(t, (addr >> 1) & 0x7F, (addr >> 8) & 0x7F, 1 - (addr & 1), height, width, path)


def parse_aedat31(blob: bytes, path="<bytes>", height: int = 128, width: int = 128) -> np.ndarray:
    """Polarity events of an AEDAT 3.1 file (see the module docstring)."""
    version, pos = _split_header(blob, path)
    if version != "#!AER-DAT3.1":
        raise ValueError(f"{path}: expected '#!AER-DAT3.1', got {version!r}")
    chunks = []
    while pos < len(blob):
        if pos + PACKET_HEADER.itemsize > len(blob):
            raise ValueError(f"{path}: truncated packet header at byte {pos}")
        h = np.frombuffer(blob, dtype=PACKET_HEADER, count=1, offset=pos)[0]
        size, number = int(h["size"]), int(h["number"])
        body = pos + PACKET_HEADER.itemsize
        end = body + size * number
        if size < 1 or number < 0 or end > len(blob):
            raise ValueError(f"{path}: malformed packet at byte {pos} (eventSize {size}, eventNumber {number})")
        if int(h["type"]) == POLARITY_EVENT:
            if size != 8:
                raise ValueError(f"{path}: polarity packet at byte {pos} has eventSize {size}, expected 8")
            raw = np.frombuffer(blob, dtype=[("data", "<u4"), ("ts", "<i4")], count=number, offset=body)
            data = raw["data"].astype(np.int64)
            t = (int(h["ts_overflow"]) << 31) | raw["ts"].astype(np.int64)
            chunks.append((t, data))
        pos = end
    t = np.concatenate([c[0] for c in chunks]) if chunks else np.zeros(0, np.int64)
    data = np.concatenate([c[1] for c in chunks]) if chunks else np.zeros(0, np.int64)
    keep = (data & 1) == 1  # bit 0: valid
    t, data = t[keep], data[keep]
    return _events(t, (data >> 17) & 0x7FFF, (data >> 2) & 0x7FFF, (data >> 1) & 1, height, width, path)


def read_aedat(path, height: int = 128, width: int = 128) -> np.ndarray:
    """Events of an AEDAT 2.0 or 3.1 file, chosen by its first line."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"read_aedat: {path} does not exist or is not a file")
    blob = path.read_bytes()
    if blob.startswith(b"#!AER-DAT2.0"):
        return parse_aedat2(blob, path, height, width)
    if blob.startswith(b"#!AER-DAT3.1"):
        return parse_aedat31(blob, path, height, width)
    raise ValueError(f"read_aedat: {path} is neither AEDAT 2.0 nor 3.1 (first bytes {blob[:16]!r})")


def write_aedat2(path, events) -> None:
    """Write events as AEDAT 2.0 with DVS128 addresses (for tests and tiny fake copies)."""
    addr = (events["y"].astype(np.uint32) << 8) | (events["x"].astype(np.uint32) << 1) | \
        (1 - events["p"].astype(np.uint32))
    words = np.empty(2 * events.size, dtype=">u4")
    words[0::2], words[1::2] = addr, events["t"]
    Path(path).write_bytes(b"#!AER-DAT2.0\r\n# This is a raw AE data file\r\n" + words.tobytes())


def write_aedat31(path, events, extra_packet: bool = True) -> None:
    """Write events as AEDAT 3.1: one polarity packet (and, by default, a special-event packet
    of type 0 that a reader must skip), for tests and tiny fake copies."""
    header = b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n"
    packets = []
    if extra_packet:
        special = np.zeros(2, dtype=[("data", "<u4"), ("ts", "<i4")])
        packets.append(np.array([(0, 1, 8, 4, 0, 2, 2, 2)], dtype=PACKET_HEADER).tobytes() + special.tobytes())
    overflow = int(events["t"].max() >> 31) if events.size else 0
    body = np.empty(events.size, dtype=[("data", "<u4"), ("ts", "<i4")])
    body["data"] = (events["x"].astype(np.uint32) << 17) | (events["y"].astype(np.uint32) << 2) | \
        (events["p"].astype(np.uint32) << 1) | 1
    body["ts"] = (events["t"] - (overflow << 31)).astype(np.int64)
    n = events.size
    packets.append(np.array([(POLARITY_EVENT, 1, 8, 4, overflow, n, n, n)], dtype=PACKET_HEADER).tobytes()
                   + body.tobytes())
    Path(path).write_bytes(header + b"".join(packets))
