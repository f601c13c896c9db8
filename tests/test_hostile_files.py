"""Files from elsewhere: a table of crafted model files and one of damaged compile-cache
entries, each with the error it must give.

Every malformed file is one gc.CheckpointError naming the file and the entry or field,
never a bare KeyError / TypeError / ValueError / RecursionError / MemoryError, never a
suggestion to pass allow_pickle. Sizes are checked before anything is allocated or
decompressed: the memory bombs (an input of 2e7 features, a 3 GiB deflated entry in a
3.1 MB file) load nothing big. Unknown entries are ignored without being read.
"""
from __future__ import annotations

import copy
import io
import json
import struct
import tracemalloc
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

import graphc as gc
from graphc import nn

RNG = np.random.default_rng(0)
X = RNG.standard_normal((8, 5)).astype(np.float32)
Y = (np.arange(8) % 3).astype(np.int32)
META = "__graphc_model__.npy"
GIB = 1 << 30
HEADER = 56         # runtime/cache_entry.py: magic 8, version 4, lengths 4 + 8, sha256 32


# ---- writing zip archives by hand (lying sizes, raw deflate streams) ----

class Raw(NamedTuple):
    """One zip entry as stored: method, payload bytes, CRC and declared size."""

    payload: bytes
    size: int
    crc: int
    method: int = zipfile.ZIP_STORED
    flags: int = 0


def stored(data: bytes) -> Raw:
    return Raw(data, len(data), zlib.crc32(data))


def write_zip(path, entries: list[tuple[str, Raw]]) -> None:
    """A zip file of exactly these entries (no zip64: sizes below 4 GiB)."""
    out, central = io.BytesIO(), io.BytesIO()
    for name, raw in entries:
        offset, encoded = out.tell(), name.encode()
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, raw.flags, raw.method, 0, 33,
                              raw.crc, len(raw.payload), raw.size, len(encoded), 0))
        out.write(encoded + raw.payload)
        central.write(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, raw.flags, raw.method,
                                  0, 33, raw.crc, len(raw.payload), raw.size, len(encoded), 0,
                                  0, 0, 0, 0, offset))
        central.write(encoded)
    start = out.tell()
    out.write(central.getvalue())
    out.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries),
                          len(central.getvalue()), start, 0))
    path.write_bytes(out.getvalue())


def npy(array, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def npy_header(descr: str, shape: tuple, data: bytes = b"") -> bytes:
    """A version-1 .npy entry whose header declares anything."""
    text = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {shape!r}, }}"
    text += " " * (63 - len(text) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode() + data


def zeros_deflated(size: int) -> Raw:
    """A raw deflate stream of `size` zero bytes (a multiple of 16 MiB), made from one
    compressed 16 MiB block repeated: 3 GiB of zeros in 3.1 MB, built in 0.2 s."""
    chunk = 1 << 24
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(chunk)) + compressor.flush(zlib.Z_FULL_FLUSH)
    tail = compressor.flush(zlib.Z_FINISH)
    crc = {3 * GIB: 0x480BBE37}.get(size)        # zlib.crc32 of 3 GiB of zeros, once
    if crc is None:
        crc = 0
        for _ in range(size // chunk):
            crc = zlib.crc32(bytes(chunk), crc)
    return Raw(block * (size // chunk) + tail, size, crc, zipfile.ZIP_DEFLATED)


# ---- the good files the table starts from ----

def _save(model, path, fit: bool = True):
    model.compile(gc.optim.Adam(0.01), model_loss(model), ["accuracy"], device="interpret")
    if fit:
        model.fit(X if model.input_shape == (5,) else None, Y, epochs=1, verbose=0)
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def model_loss(model):
    return "sparse_categorical_crossentropy" if model.input_shape == (5,) else "mse"


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """name -> {entry: bytes} of three valid files: a Sequential MLP (trained, with Adam
    state), a functional model and an LSTM."""
    folder = tmp_path_factory.mktemp("good")
    gc.random.set_seed(0)
    mlp = nn.Sequential([nn.Input((5,)), nn.Dense(8, activation="relu"), nn.Dropout(0.1),
                         nn.Dense(3, activation="softmax")])
    inputs = nn.Input((5,), name="features")
    functional = nn.Model(inputs, nn.Dense(3, activation="softmax")(
        nn.Dense(4, activation="relu")(inputs)))
    lstm = nn.Sequential([nn.Input((3, 2)), nn.LSTM(4), nn.Dense(1)])
    return {"mlp": _save(mlp, folder / "mlp.npz"),
            "functional": _save(functional, folder / "functional.npz"),
            "lstm": _save(lstm, folder / "lstm.npz", fit=False)}


def meta_of(entries: dict) -> dict:
    return json.loads(np.load(io.BytesIO(entries[META])).tobytes())


def meta_entry(meta) -> bytes:
    text = meta if isinstance(meta, str) else json.dumps(meta)
    return npy(np.frombuffer(text.encode(), np.uint8))


def archive(entries: dict, **changed) -> list[tuple[str, Raw]]:
    """The entries (bytes or Raw) with some replaced (value None: removed), all stored."""
    merged = {**entries, **{k.replace("__", "/") + ".npy" if not k.endswith(".npy") else k: v
                            for k, v in changed.items()}}
    return [(name, data if isinstance(data, Raw) else stored(data))
            for name, data in merged.items() if data is not None]


def with_meta(entries: dict, change) -> list[tuple[str, Raw]]:
    meta = copy.deepcopy(meta_of(entries))
    result = change(meta)
    return archive(entries, **{META: meta_entry(meta if result is None else result)})


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _set(path: str, value):
    """A meta change setting the field at `path` (dots and [i])."""
    def change(meta):
        keys = [int(k) if k.isdigit() else k for k in path.replace("[", ".").replace("]", "")
                .split(".")]
        target = meta
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return change


def _flip_a_weight_byte(entries):
    """One bit of a weight flipped on the disk: the CRC in the directory is the original's."""
    original = entries["weights/0.npy"]
    data = bytearray(original)
    data[-7] ^= 0x10
    return archive(entries, **{"weights/0.npy": Raw(bytes(data), len(data),
                                                    zlib.crc32(original))})


def _encrypted(entries):
    data = entries["weights/1.npy"]
    return archive(entries, **{"weights/1.npy": Raw(data, len(data), zlib.crc32(data),
                                                    flags=1)})


def _twice(entries):
    return archive(entries) + [("weights/0.npy", stored(entries["weights/0.npy"]))]


# ---- the table: (row name, good file, how to craft it, expected error text) ----

ROWS = [
    ("empty file", "mlp", lambda e: b"", r"truncated, corrupt or not an \.npz"),
    ("random bytes", "mlp", lambda e: bytes(RNG.integers(0, 256, 4000, dtype=np.uint8)),
     r"truncated, corrupt or not an \.npz"),
    ("half a file", "mlp", lambda e: "half", r"truncated, corrupt or not an \.npz"),
    ("a single .npy", "mlp", lambda e: npy(np.zeros(3)), r"a single \.npy array"),
    ("foreign .npz", "mlp", lambda e: archive({"a.npy": npy(np.zeros(3))}),
     r"not a graphc model: it has no '__graphc_model__' entry"),
    ("metadata not UTF-8", "mlp", lambda e: archive(e, **{META: npy(np.frombuffer(
        b"\xff\xfe{", np.uint8))}), r"entry '__graphc_model__': is not UTF-8"),
    ("metadata not JSON", "mlp", lambda e: with_meta(e, lambda m: "{'format': 1"),
     r"'__graphc_model__': is not valid JSON"),
    ("JSON nested 100,000 deep", "mlp", lambda e: with_meta(e, lambda m: nested(100_000)),
     r"nests 100000 levels deep \(at most 64\)"),
    ("JSON list", "mlp", lambda e: with_meta(e, lambda m: "[1, 2]"),
     r"holds a list, not an object"),
    ("metadata as float64", "mlp", lambda e: archive(e, **{META: npy(np.zeros(4))}),
     r"entry '__graphc_model__' holds float64\[4\], not uint8 JSON"),
    ("weights-only file", "mlp", lambda e: with_meta(e, _set("format", "graphc.nn.weights")),
     r"field format: 'graphc.nn.weights', expected 'graphc.nn.model'"),
    ("version as a string", "mlp", lambda e: with_meta(e, _set("version", "1")),
     r"field version: is a string \('1'\), expected an integer"),
    ("config missing", "mlp", lambda e: with_meta(e, lambda m: m.pop("config") and None),
     r"field config: is missing"),
    ("unknown model class", "mlp", lambda e: with_meta(e, _set("class_name", "Evil")),
     r"field class_name: unknown model class 'Evil'"),
    ("unknown layer class", "mlp",
     lambda e: with_meta(e, _set("config.layers[1].class_name", "NoSuchLayer")),
     r"field config: cannot rebuild the architecture .*unknown layer class 'NoSuchLayer'"),
    ("string for an int", "mlp", lambda e: with_meta(e, _set("config.layers[0].config.units",
                                                              "8")),
     r"field config\.layers\[0\]\.config\.units: '8' is not a valid setting \(read as 8\)"),
    ("fraction for an int", "mlp",
     lambda e: with_meta(e, _set("config.layers[0].config.units", 8.5)),
     r"field config\.layers\[0\]\.config\.units: 8\.5 is not a valid setting"),
    ("true for an int", "mlp", lambda e: with_meta(e, _set("config.layers[0].config.units",
                                                            True)),
     r"field config\.layers\[0\]\.config\.units: is true or false|units: True is not a valid"),
    ("dropout rate 1.5", "mlp", lambda e: with_meta(e, _set("config.layers[1].config.rate", 1.5)),
     r"field config: cannot rebuild .*rate must be in \[0, 1\), got 1\.5"),
    ("learning_rate NaN", "mlp",
     lambda e: with_meta(e, _set("compile.optimizer.config.learning_rate", float("nan"))),
     r"field compile\.optimizer\.config\.learning_rate: nan is not a finite number"),
    ("learning_rate past float32", "mlp",
     lambda e: with_meta(e, _set("compile.optimizer.config.learning_rate", 1e39)),
     r"field compile\.optimizer\.config\.learning_rate: 1e\+39 is not a valid setting"),
    ("learning_rate as a string", "mlp",
     lambda e: with_meta(e, _set("compile.optimizer.config.learning_rate", "0.1")),
     r"field compile\.optimizer\.config\.learning_rate: '0\.1' is not a valid setting"),
    ("from_logits as a string", "mlp",
     lambda e: with_meta(e, _set("compile.loss.config.from_logits", "no")),
     r"field compile\.loss\.config\.from_logits: 'no' is not a valid setting"),
    ("negative input dimension", "mlp", lambda e: with_meta(e, _set("config.input.shape", [-5])),
     r"field config\.input\.shape\[0\]: -5 is not a dimension"),
    ("complex input dtype", "mlp",
     lambda e: with_meta(e, _set("config.input.dtype", "complex64")),
     r"field config\.input\.dtype: 'complex64' is not a dtype graphc models use"),
    ("memory bomb: an input of 2e7 features", "mlp",
     lambda e: with_meta(e, _set("config.input.shape", [20_000_000])),
     r"field config: layer dense_\d+ would create weight kernel of shape \(20000000, 8\) "
     r"\(160,000,000 values\), more than the file's weights hold"),
    ("an LSTM of 1e7 time steps", "lstm",
     lambda e: with_meta(e, _set("config.input.shape", [10_000_000, 2])),
     r"layer lstm_\d+ would unroll 10,000,000 time steps"),
    ("node reading a later node", "functional",
     lambda e: with_meta(e, _set("config.nodes[0].inputs[0]", ["node", 1, 0])),
     r"field config\.nodes\[0\]\.inputs\[0\]\[1\]: 1 is not an index in \[0, 0\)"),
    ("node of a missing layer", "functional",
     lambda e: with_meta(e, _set("config.nodes[1].layer", 7)),
     r"field config\.nodes\[1\]\.layer: 7 is not an index in \[0, 2\)"),
    ("output index past the outputs", "functional",
     lambda e: with_meta(e, _set("config.outputs[0]", ["node", 1, 3])),
     r"field config: cannot rebuild the architecture .*IndexError"),
    ("weight entry missing", "mlp", lambda e: archive(e, **{"weights/2.npy": None}),
     r"entry 'weights/2' is missing"),
    ("weight of another shape", "mlp",
     lambda e: archive(e, **{"weights/2.npy": npy(np.zeros((8, 4), np.float32))}),
     r"weight 2 \(dense_\d+/kernel\) has shape \(8, 4\) in the file, but the model's "
     r"dense_\d+/kernel has shape \(8, 3\)"),
    ("1e300 weights", "mlp",
     lambda e: archive(e, **{"weights/1.npy": npy(np.full(8, 1e300))}),
     r"entry 'weights/1' holds 1e\+300 at index \(0,\): not a finite float32"),
    ("NaN weights", "mlp",
     lambda e: archive(e, **{"weights/3.npy": npy(np.array([0, np.nan, 0], np.float32))}),
     r"entry 'weights/3' holds nan at index \(1,\)"),
    ("strings for weights", "mlp",
     lambda e: archive(e, **{"weights/1.npy": npy(np.array(["1"] * 8))}),
     r"entry 'weights/1' holds dtype '<U1'; graphc files hold plain bool, integer or float"),
    ("complex weights", "mlp",
     lambda e: archive(e, **{"weights/1.npy": npy(np.zeros(8, np.complex64))}),
     r"entry 'weights/1' holds dtype '<c8'"),
    ("datetime weights", "mlp",
     lambda e: archive(e, **{"weights/1.npy": npy(np.zeros(8, "datetime64[ns]"))}),
     r"entry 'weights/1' holds dtype '<M8\[ns\]'"),
    ("a pickled object for a weight", "mlp",
     lambda e: archive(e, **{"weights/1.npy": npy(np.array([{}] * 8, object), True)}),
     r"entry 'weights/1' holds dtype '\|O'.*no objects"),
    ("header declaring 2e9 values", "mlp",
     lambda e: archive(e, **{"weights/1.npy": npy_header("<f4", (2_000_000_000,), bytes(32))}),
     r"entry 'weights/1' has a header declaring shape \(2000000000,\) of float32 "
     r"\(8,000,000,000 bytes of data\), but the entry holds 32"),
    ("malformed .npy header", "mlp",
     lambda e: archive(e, **{"weights/1.npy": npy_header("<f4", "(8,)")[:-20] + b"x" * 52}),
     r"entry 'weights/1' has a malformed \.npy header"),
    ("flipped bit in a weight", "mlp", _flip_a_weight_byte,
     r"entry 'weights/0' is corrupt \(BadZipFile: Bad CRC-32"),
    ("encrypted entry", "mlp", _encrypted, r"entry 'weights/1' is encrypted"),
    ("entry twice", "mlp", _twice, r"entry 'weights/0' appears twice"),
    ("3 GiB weight in 3.1 MB", "mlp",
     lambda e: archive(e, **{"weights/1.npy": zeros_deflated(3 * GIB)}),
     r"entry 'weights/1' declares 3,221,225,472 bytes from 3,132,\d+ compressed, more than"),
    ("iterations as float", "mlp",
     lambda e: archive(e, **{"optimizer/iterations.npy": npy(np.float64(2.5))}),
     r"entry 'optimizer/iterations' holds float64 values; optimizer iterations is int32"),
    ("iterations past int32", "mlp",
     lambda e: archive(e, **{"optimizer/iterations.npy": npy(np.int64(10 ** 10))}),
     r"entry 'optimizer/iterations' holds 10000000000 at index \(\): outside int32"),
    ("state of no variable", "mlp", lambda e: with_meta(e, lambda m: m["optimizer_state"].append(
        "slots/9/momentum")), r"entry 'optimizer/slots/9/momentum' is no state of Adam"),
]


def _write(tmp_path, good, source: str, craft):
    path = tmp_path / "crafted.npz"
    made = craft(good[source])
    if made == "half":
        write_zip(path, archive(good[source]))
        made = path.read_bytes()[:path.stat().st_size // 2]
    if isinstance(made, bytes):
        path.write_bytes(made)
    else:
        write_zip(path, made)
    return path


@pytest.mark.parametrize("row, source, craft, expected", ROWS, ids=[r[0] for r in ROWS])
def test_crafted_file_gives_its_error(tmp_path, good, row, source, craft, expected):
    path = _write(tmp_path, good, source, craft)
    tracemalloc.start()
    try:
        with pytest.raises(gc.CheckpointError) as caught:
            nn.load_model(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    text = str(caught.value)
    assert str(path) in text, text
    assert "allow_pickle" not in text
    assert caught.match(expected)
    assert peak < 64 << 20, f"{row}: {peak / 2**20:.0f} MiB allocated while loading"


def test_table_covers_the_issue(good):
    assert len(ROWS) >= 30
    assert issubclass(gc.CheckpointError, gc.GraphcError) and gc.CheckpointError is \
        nn.CheckpointError


def test_unknown_entries_are_never_read(tmp_path, good):
    """A 3 GiB deflated entry nobody asks for (the file is 3.1 MB): loads, never inflated."""
    path = tmp_path / "padded.npz"
    write_zip(path, archive(good["mlp"], **{"unused.npy": zeros_deflated(3 * GIB)}))
    assert path.stat().st_size < 4 << 20
    tracemalloc.start()
    try:
        model = nn.load_model(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20
    assert model.predict(X).shape == (8, 3)


def test_good_files_still_load(tmp_path, good):
    for name, entries in good.items():
        path = tmp_path / f"{name}.npz"
        write_zip(path, archive(entries))
        model = nn.load_model(path)
        assert model.optimizer is not None and model.weights
    hand_written = tmp_path / "lr.npz"          # 0.1 is no float32: read back rounded
    write_zip(hand_written, with_meta(good["mlp"], _set(
        "compile.optimizer.config.learning_rate", 0.1)))
    assert nn.load_model(hand_written, compile=True).optimizer is not None


# ---- compile-cache entries: (entry path, its bytes, helpers) -> damage it ----
#
# Each damaged entry must be set aside as `<entry>.bad` with a warning containing its text and
# the program rebuilt from source. The driver may crash on a bad binary, so the cases run in
# one child process (tests/test_hostile_cache.py's child_main).


def flip_bit(data: bytes, index: int, mask: int = 0x10) -> bytes:
    return data[:index] + bytes([data[index] ^ mask]) + data[index + 1:]


def with_field(data: bytes, offset: int, fmt: str, value) -> bytes:
    size = struct.calcsize(fmt)
    return data[:offset] + struct.pack(fmt, value) + data[offset + size:]


def as_directory(path: Path, data: bytes, kit) -> None:
    path.unlink()
    (path / "inside").mkdir(parents=True)


def raw_binary(path: Path, data: bytes, kit) -> None:
    """What graphc wrote before entries had a header: the driver's binary alone."""
    path.write_bytes(kit.payload(data))


def other_device(path: Path, data: bytes, kit) -> None:
    identity = json.loads(kit.identity)
    identity["device"] = "another device"
    path.write_bytes(kit.pack(json.dumps(identity).encode(), kit.payload(data)))


def rejected_by_the_driver(path: Path, data: bytes, kit) -> None:
    """A well-formed entry (checksum and identity right) whose binary the driver refuses.
    Only forgery makes one (graphc stores what the driver gave it), and only PoCL refuses
    it cleanly: rusticl panics ("unknown version"), which the checks above prevent."""
    path.write_bytes(kit.pack(kit.identity, b"not a binary at all"))


DRIVER_MUST_REFUSE = "binary rejected by the driver"


def other_key(path: Path, data: bytes, kit) -> None:
    """The entry of another program copied under this one's name."""
    path.write_bytes(kit.other_entry)


def write(transform):
    return lambda path, data, kit: path.write_bytes(transform(data))


CACHE_CASES = {
    "truncated to 0 bytes": (write(lambda d: b""), "0 bytes, shorter than the 56-byte header"),
    "truncated to half": (write(lambda d: d[:len(d) // 2]), "the header declares"),
    "last byte missing": (write(lambda d: d[:-1]), "the header declares"),
    "bit flipped in the payload": (write(lambda d: flip_bit(d, len(d) - 100)),
                                   "the payload's sha256 differs from the header's"),
    "bit flipped in the header's checksum": (write(lambda d: flip_bit(d, 30)),
                                             "the payload's sha256 differs from the header's"),
    # (0x01 keeps a hex digit of the key printable and unquoted: 0x10 made a '2' a '"')
    "bit flipped in the identity": (write(lambda d: flip_bit(d, HEADER + 12, 0x01)),
                                    "built for key"),
    "wrong magic": (write(lambda d: b"GRAPHCK\0" + d[8:]), "not a graphc cache entry"),
    "wrong format version": (write(lambda d: with_field(d, 8, "<I", 2)),
                             "format version 2, this graphc reads 1"),
    "wrong payload length": (write(lambda d: with_field(d, 16, "<Q", 12345)),
                             "the header declares"),
    "huge identity length": (write(lambda d: with_field(d, 12, "<I", 2**31)),
                             "the header declares"),
    "other device's identity": (other_device, "built for device 'another device', not"),
    "another program's entry": (other_key, "built for key"),
    "garbage file": (write(lambda d: bytes(range(256)) * 16), "not a graphc cache entry"),
    "raw driver binary (old format)": (raw_binary, "not a graphc cache entry"),
    "a directory in place of the file": (as_directory, "unreadable"),
    DRIVER_MUST_REFUSE: (rejected_by_the_driver, "the driver rejected its binary"),
}


@pytest.fixture(scope="module")
def cache_table(cl_device, tmp_path_factory) -> dict:
    import test_hostile_cache          # imports this module: loaded lazily, no import cycle
    return test_hostile_cache.run_table(tmp_path_factory.mktemp("hostile") / "kernels")


@pytest.mark.opencl
@pytest.mark.parametrize("name", list(CACHE_CASES))
def test_a_bad_cache_entry_is_set_aside_and_rebuilt(cache_table, name):
    table = cache_table
    returncode, stderr = table["__exit__"]
    assert name in table, f"the child died before this case (exit {returncode}):\n{stderr}"
    outcome = table[name]
    if "skip" in outcome:
        pytest.skip(outcome["skip"])
    _, expected = CACHE_CASES[name]
    assert outcome["origin"] == "miss"                     # built from source, not loaded
    assert outcome["right"]                                # ... and computes the right thing
    assert len(outcome["warnings"]) == 1, outcome["warnings"]
    warning = outcome["warnings"][0]
    assert expected in warning and ".bin" in warning and "building from source" in warning
    assert outcome["set_aside"] and "moved to" in warning and ".bin.bad" in warning
    assert outcome["stored"]                               # a good entry replaced it
    assert outcome["next"] == "disk" and outcome["next_right"]


def test_the_cache_table_covers_eleven_kinds_of_damage():
    assert len(CACHE_CASES) >= 11
