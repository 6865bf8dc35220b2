"""Tests of refsnn.data: bundled digits, CIFAR reader, synthetic set, augmentation, loader."""

import gzip
import hashlib
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refsnn.data as D
from refsnn.data import digits as digits_mod

# ----------------------------------------------------------------------------- digits

TEST_COUNTS = [36, 36, 35, 37, 36, 36, 36, 36, 35, 36]
TRAIN_COUNTS = [142, 146, 142, 146, 145, 146, 145, 143, 139, 144]


@pytest.fixture(scope="module")
def digits():
    return D.load_digits("train"), D.load_digits("test")


def test_digits_shapes_dtypes_and_counts(digits):
    tr, te = digits
    assert tr.x.shape == (1438, 1, 8, 8) and te.x.shape == (359, 1, 8, 8)
    assert tr.x.dtype == np.float64 and tr.y.dtype == np.int64 and te.y.dtype == np.int64
    assert tr.classes == te.classes == 10
    assert tr.name == "digits/train" and te.name == "digits/test"
    assert np.bincount(tr.y, minlength=10).tolist() == TRAIN_COUNTS
    assert np.bincount(te.y, minlength=10).tolist() == TEST_COUNTS
    assert tr.augment is None


def test_digits_split_stratified_disjoint_deterministic():
    _, y = digits_mod._load_raw()
    tr1, te1 = digits_mod.split_indices(y)
    tr2, te2 = digits_mod.split_indices(y)
    assert np.array_equal(tr1, tr2) and np.array_equal(te1, te2)
    assert np.intersect1d(tr1, te1).size == 0
    assert np.array_equal(np.sort(np.concatenate([tr1, te1])), np.arange(1797))
    per_class = np.bincount(y)
    frac = np.bincount(y[te1], minlength=10) / per_class
    assert np.all(np.abs(frac - 0.2) <= 0.5 / per_class + 1e-12)
    # the test rows are not simply the first rows of each class (the split is shuffled)
    first_rows = np.sort(np.concatenate([np.flatnonzero(y == c)[:k] for c, k in enumerate(TEST_COUNTS)]))
    assert not np.array_equal(te1, first_rows)


def test_digits_normalisation_uses_train_stats(digits):
    tr, te = digits
    assert abs(tr.x.mean()) < 1e-12 and abs(tr.x.std() - 1.0) < 1e-12
    mean, std = D.digits_stats()
    assert mean == pytest.approx(4.887734700973574, abs=1e-12)
    assert std == pytest.approx(6.0177592656344805, abs=1e-12)
    # test split uses the same (train) statistics: undoing them gives the raw integers 0..16
    raw_te = te.x * std + mean
    assert np.allclose(raw_te, np.round(raw_te), atol=1e-9)
    assert raw_te.min() > -1e-9 and raw_te.max() < 16 + 1e-9
    assert abs(te.x.mean()) > 1e-6  # test stats are not re-centred


def test_digits_matches_raw_file(digits):
    tr, _ = digits
    with gzip.open(digits_mod.resources.files("refsnn.data").joinpath("digits.csv.gz")) as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    tr_idx, _ = digits_mod.split_indices(table[:, 64])
    mean, std = D.digits_stats()
    assert np.array_equal(tr.y, table[tr_idx, 64])
    assert np.allclose(tr.x[5, 0] * std + mean, table[tr_idx[5], :64].reshape(8, 8))


def test_digits_float32_and_bad_args():
    x32 = D.load_digits("test", dtype=np.float32)
    assert x32.x.dtype == np.float32
    with pytest.raises(ValueError, match="split='val'"):
        D.load_digits("val")
    with pytest.raises(ValueError, match="float32, float64"):
        D.load_digits("train", dtype=np.int32)


def test_digits_sha_mismatch_raises(tmp_path, monkeypatch):
    good = digits_mod._read_digits_bytes()
    assert hashlib.sha256(good).hexdigest() == D.DIGITS_SHA256
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    copy = tmp_path / "digits.csv.gz"
    copy.write_bytes(bytes(bad))
    monkeypatch.setattr(digits_mod, "_read_digits_bytes", copy.read_bytes)
    with pytest.raises(ValueError, match="sha256"):
        D.load_digits("train")
    # a different but well-formed gzip is rejected too
    monkeypatch.setattr(digits_mod, "_read_digits_bytes", lambda: gzip.compress(b"0," * 64 + b"0\n"))
    with pytest.raises(ValueError, match="corrupted"):
        D.load_digits("test")


# ----------------------------------------------------------------------------- CIFAR fixtures


def _dump(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _images(rng, n):
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def write_cifar10(folder, per_batch=4, n_test=6, seed=0):
    """A tiny CIFAR-10 copy in the exact python-version format. Returns (train, test) raw arrays."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for i in range(1, 6):
        x = _images(rng, per_batch)
        y = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        _dump(folder / f"data_batch_{i}", {
            b"batch_label": f"training batch {i} of 5".encode(),
            b"labels": y, b"data": x,
            b"filenames": [f"img_{i}_{j}.png".encode() for j in range(per_batch)],
        })
        xs.append(x)
        ys += y
    xt = _images(rng, n_test)
    yt = [int(v) for v in rng.integers(0, 10, size=n_test)]
    _dump(folder / "test_batch", {b"batch_label": b"testing batch 1 of 1", b"labels": yt, b"data": xt,
                                  b"filenames": [b"t.png"] * n_test})
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    _dump(folder / "batches.meta", {b"num_cases_per_batch": per_batch, b"label_names": names, b"num_vis": 3072})
    return (np.concatenate(xs), np.array(ys)), (xt, np.array(yt))


def write_cifar100(folder, n_train=12, n_test=5, seed=1):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for split, n in (("train", n_train), ("test", n_test)):
        x = _images(rng, n)
        fine = [int(v) for v in rng.integers(0, 100, size=n)]
        fine[0] = 99
        _dump(folder / split, {b"filenames": [b"f.png"] * n, b"batch_label": split.encode(),
                               b"fine_labels": fine, b"coarse_labels": [v // 5 for v in fine], b"data": x})
        out.append((x, np.array(fine)))
    _dump(folder / "meta", {b"fine_label_names": [f"c{i}".encode() for i in range(100)],
                            b"coarse_label_names": [f"s{i}".encode() for i in range(20)]})
    return out


def _normalise(raw_rows, mean, std):
    x = raw_rows.reshape(-1, 3, 32, 32).astype(np.float64) / 255.0
    return (x - np.array(mean).reshape(1, 3, 1, 1)) / np.array(std).reshape(1, 3, 1, 1)


def test_cifar10_load(tmp_path):
    (xtr, ytr), (xte, yte) = write_cifar10(tmp_path / "c10")
    tr = D.load_cifar(tmp_path / "c10", "cifar10", "train")
    te = D.load_cifar(str(tmp_path / "c10"), "cifar10", "test", dtype=np.float32)
    assert tr.x.shape == (20, 3, 32, 32) and tr.x.dtype == np.float64
    assert te.x.shape == (6, 3, 32, 32) and te.x.dtype == np.float32
    assert np.array_equal(tr.y, ytr) and tr.y.dtype == np.int64 and np.array_equal(te.y, yte)
    assert tr.classes == 10 and tr.class_names[0] == "airplane" and tr.class_names[9] == "truck"
    assert np.array_equal(tr.x, _normalise(xtr, D.CIFAR10_MEAN, D.CIFAR10_STD))
    assert np.allclose(te.x, _normalise(xte, D.CIFAR10_MEAN, D.CIFAR10_STD), atol=1e-6)
    # channel layout: row = 1024 R, 1024 G, 1024 B, each 32x32 row-major
    r, g, b = D.CIFAR10_MEAN
    assert tr.x[3, 1, 2, 5] == pytest.approx((xtr[3, 1024 + 2 * 32 + 5] / 255 - g) / D.CIFAR10_STD[1])
    assert tr.x[7, 2, 31, 0] == pytest.approx((xtr[7, 2048 + 31 * 32] / 255 - b) / D.CIFAR10_STD[2])
    # train carries the augmentation, test does not; augment can be forced either way
    assert isinstance(tr.augment, D.RandomCropFlip) and te.augment is None
    assert tr.augment.pad == 4 and tr.augment.flip_prob == 0.5
    assert np.allclose(tr.augment.fill, -np.array(D.CIFAR10_MEAN) / np.array(D.CIFAR10_STD))
    assert D.load_cifar(tmp_path / "c10", split="train", augment=False).augment is None
    # the nested layout of the official archive is found from its parent folder
    write_cifar10(tmp_path / "parent" / "cifar-10-batches-py")
    assert len(D.load_cifar(tmp_path / "parent", "cifar10", "test")) == 6


def test_cifar100_load(tmp_path):
    (xtr, ytr), (xte, yte) = write_cifar100(tmp_path / "c100")
    tr = D.get_dataset("cifar100", root=tmp_path / "c100", split="train")
    te = D.get_dataset("cifar100", root=tmp_path / "c100", split="test")
    assert tr.x.shape == (12, 3, 32, 32) and te.x.shape == (5, 3, 32, 32)
    assert tr.classes == 100 and np.array_equal(tr.y, ytr) and tr.y.max() == 99 and np.array_equal(te.y, yte)
    assert tr.class_names[42] == "c42" and tr.name == "cifar100/train"
    assert np.array_equal(tr.x, _normalise(xtr, D.CIFAR100_MEAN, D.CIFAR100_STD))
    custom = D.load_cifar(tmp_path / "c100", "cifar100", "test", mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0))
    assert np.array_equal(custom.x, _normalise(xte, (0.5,) * 3, (0.25, 0.5, 1.0)))


def test_cifar_missing_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        D.load_cifar(tmp_path / "nope", "cifar10")
    write_cifar10(tmp_path / "c10")
    (tmp_path / "c10" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3") as ei:
        D.load_cifar(tmp_path / "c10", "cifar10", "train")
    assert str(tmp_path / "c10") in str(ei.value)
    assert len(D.load_cifar(tmp_path / "c10", "cifar10", "test")) == 6  # test split needs only test_batch
    with pytest.raises(FileNotFoundError, match="train"):
        D.load_cifar(tmp_path / "c10", "cifar100", "train")
    with pytest.raises(ValueError, match="root=None"):
        D.load_cifar(None, "cifar10")
    with pytest.raises(ValueError, match="'cifar10', 'cifar100'"):
        D.load_cifar(tmp_path / "c10", "cifar1000")


@pytest.mark.parametrize(
    "payload, match",
    [
        (b"this is not a pickle", "not a readable"),
        (pickle.dumps([1, 2, 3]), "expected a dict"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}), "b'labels'"),
        (pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]}), "lacks keys"),
        (pickle.dumps({b"data": np.zeros((2, 3000), np.uint8), b"labels": [0, 1]}), "3072"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}), "uint8"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1, 2]}), "must be 2 ints"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}), r"allowed \[0, 9\]"),
    ],
)
def test_cifar_malformed_pickle(tmp_path, payload, match):
    write_cifar10(tmp_path)
    (tmp_path / "test_batch").write_bytes(payload)
    with pytest.raises(ValueError, match=match) as ei:
        D.load_cifar(tmp_path, "cifar10", "test")
    assert "test_batch" in str(ei.value)


def test_cifar_malformed_meta(tmp_path):
    write_cifar10(tmp_path)
    _dump(tmp_path / "batches.meta", {b"label_names": [b"a", b"b"]})
    with pytest.raises(ValueError, match="batches.meta"):
        D.load_cifar(tmp_path, "cifar10", "test")
    (tmp_path / "batches.meta").unlink()
    assert D.load_cifar(tmp_path, "cifar10", "test").class_names is None


# ----------------------------------------------------------------------------- augmentation


def _crop_flip_reference(x, pad, dy, dx, flip, fill):
    """Literal per-sample version of RandomCropFlip given its draws."""
    b, c, h, w = x.shape
    out = np.empty_like(x)
    for i in range(b):
        p = np.full((c, h + 2 * pad, w + 2 * pad), 0.0, dtype=x.dtype)
        p[...] = np.asarray(fill, dtype=np.float64).reshape(-1, 1, 1) if np.ndim(fill) else fill
        p[:, pad:pad + h, pad:pad + w] = x[i]
        crop = p[:, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out[i] = crop[:, :, ::-1] if flip[i] else crop
    return out


@pytest.mark.parametrize("fill", [0.0, (-1.0, -2.0, -3.0)])
def test_crop_flip_matches_reference(fill):
    x = np.random.default_rng(0).standard_normal((16, 3, 8, 8))
    aug = D.RandomCropFlip(pad=4, flip_prob=0.5, fill=fill)
    out = aug(x, np.random.default_rng(7))
    rng = np.random.default_rng(7)
    dy, dx = rng.integers(0, 9, size=16), rng.integers(0, 9, size=16)
    flip = rng.random(16) < 0.5
    assert np.array_equal(out, _crop_flip_reference(x, 4, dy, dx, flip, fill))


def test_crop_flip_determinism_shape_and_motion():
    x = np.random.default_rng(1).standard_normal((32, 3, 32, 32)).astype(np.float32)
    x0 = x.copy()
    aug = D.RandomCropFlip(pad=4)
    a = aug(x, np.random.default_rng(123))
    b = aug(x, np.random.default_rng(123))
    c = aug(x, np.random.default_rng(124))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.shape == x.shape and a.dtype == np.float32
    assert np.array_equal(x, x0)  # input untouched
    moved = [not np.array_equal(a[i], x[i]) for i in range(32)]
    assert sum(moved) >= 28  # P(unchanged) = 1/81 * 1/2 per sample
    assert np.any(a == 0.0)  # zero padding entered some crops


def test_flip_only_and_identity():
    x = np.random.default_rng(2).standard_normal((5, 2, 4, 6))
    assert np.array_equal(D.RandomCropFlip(pad=0, flip_prob=1.0)(x, np.random.default_rng(0)), x[..., ::-1])
    assert np.array_equal(D.RandomCropFlip(pad=0, flip_prob=0.0)(x, np.random.default_rng(0)), x)
    with pytest.raises(ValueError, match="flip_prob"):
        D.RandomCropFlip(flip_prob=1.5)
    with pytest.raises(ValueError, match="pad=-1"):
        D.RandomCropFlip(pad=-1)
    with pytest.raises(ValueError, match="channels"):
        D.RandomCropFlip(fill=(0.0, 1.0, 2.0))(x, np.random.default_rng(0))


# ----------------------------------------------------------------------------- loader


def _indexed(n, classes=3):
    """A dataset whose x records the sample index, to track the order."""
    return D.Dataset(x=np.arange(n, dtype=np.float64).reshape(n, 1, 1, 1),
                     y=np.arange(n, dtype=np.int64) % classes, classes=classes, name="indexed")


def _ids(loader, start=0):
    return np.concatenate([xb.reshape(-1) for xb, _ in loader.batches(start)]).astype(int)


def test_loader_batching_and_drop_last():
    ds = _indexed(10)
    ld = D.DataLoader(ds, batch_size=4)
    sizes = [xb.shape[0] for xb, _ in ld]
    assert len(ld) == 3 and sizes == [4, 4, 2]
    assert np.array_equal(_ids(ld), np.arange(10))
    xb, yb = next(iter(ld))
    assert xb.shape == (4, 1, 1, 1) and yb.dtype == np.int64 and np.array_equal(yb, [0, 1, 2, 0])
    xb[:] = -1  # batches are copies
    assert ds.x[0, 0, 0, 0] == 0
    ld2 = D.DataLoader(ds, batch_size=4, drop_last=True)
    assert len(ld2) == 2 and [x.shape[0] for x, _ in ld2] == [4, 4]
    assert len(D.DataLoader(ds, batch_size=11, drop_last=True)) == 0
    assert len(D.DataLoader(ds, batch_size=5, drop_last=True)) == 2


def test_loader_shuffle_determinism_and_epochs():
    ds = _indexed(50)
    a = D.DataLoader(ds, 8, shuffle=True, seed=3)
    b = D.DataLoader(ds, 8, shuffle=True, seed=3)
    e0 = _ids(a)
    assert np.array_equal(e0, _ids(b))
    assert np.array_equal(np.sort(e0), np.arange(50)) and not np.array_equal(e0, np.arange(50))
    assert np.array_equal(e0, np.random.default_rng(3).permutation(50))
    assert np.array_equal(_ids(a), e0)  # no implicit epoch advance
    a.set_epoch(1)
    e1 = _ids(a)
    assert not np.array_equal(e1, e0) and np.array_equal(e1, np.random.default_rng(4).permutation(50))
    assert not np.array_equal(_ids(D.DataLoader(ds, 8, shuffle=True, seed=5)), e0)
    a.set_epoch(0)
    assert np.array_equal(_ids(a), e0)  # a resumed run sees the same order


def test_loader_augmentation_and_resume(tmp_path):
    write_cifar10(tmp_path, per_batch=6)
    ds = D.load_cifar(tmp_path, "cifar10", "train")
    ld = D.DataLoader(ds, batch_size=7, shuffle=True, seed=11)
    ld.set_epoch(2)
    full = list(ld)
    again = list(D.DataLoader(ds, batch_size=7, shuffle=True, seed=11))  # epoch 0
    assert not all(np.array_equal(p[0], q[0]) for p, q in zip(full, again))
    resumed = D.DataLoader(ds, batch_size=7, shuffle=True, seed=11)
    resumed.set_epoch(2)
    tail = list(resumed.batches(start=2))
    assert len(tail) == len(full) - 2
    for (x1, y1), (x2, y2) in zip(full[2:], tail):
        assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    # augmentation is applied (batches differ from the un-augmented samples), and can be disabled
    order = ld.order()
    off = D.DataLoader(ds, batch_size=7, shuffle=True, seed=11, augment=False)
    off.set_epoch(2)
    plain = list(off)
    assert np.array_equal(plain[0][0], ds.x[order[:7]])
    assert not np.array_equal(full[0][0], plain[0][0])
    assert np.array_equal(full[0][1], plain[0][1])
    # the augment rng of batch k is SeedSequence(seed + epoch).spawn(k + 1)[k]
    child = np.random.SeedSequence(13).spawn(2)[1]
    expect = ds.augment(ds.x[order[7:14]], np.random.default_rng(child))
    assert np.array_equal(full[1][0], expect)


def test_loader_custom_augment_and_validation():
    ds = _indexed(6)
    ld = D.DataLoader(ds, 3, augment=lambda x, rng: x + rng.integers(1, 2))
    assert np.array_equal(_ids(ld), np.arange(6) + 1)
    bad = D.DataLoader(ds, 3, augment=lambda x, rng: x[:1])
    with pytest.raises(ValueError, match="expected"):
        list(bad)
    with pytest.raises(ValueError, match="batch_size=0"):
        D.DataLoader(ds, 0)
    for bs in (2.5, True, "4"):
        with pytest.raises(TypeError, match="batch_size"):
            D.DataLoader(ds, bs)
    with pytest.raises(ValueError, match="seed=-1"):
        D.DataLoader(ds, 2, seed=-1)
    with pytest.raises(TypeError, match="shuffle"):
        D.DataLoader(ds, 2, shuffle="yes")
    with pytest.raises(ValueError, match="epoch=-1"):
        D.DataLoader(ds, 2).set_epoch(-1)
    with pytest.raises(ValueError, match="start=3"):
        list(D.DataLoader(ds, 3).batches(start=3))
    with pytest.raises(TypeError, match="Dataset"):
        D.DataLoader(ds.x, 2)
    with pytest.raises(TypeError, match="augment"):
        D.DataLoader(ds, 2, augment=3)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), bs=st.integers(1, 12), shuffle=st.booleans(),
       drop_last=st.booleans(), seed=st.integers(0, 2**31), epoch=st.integers(0, 100))
def test_loader_serves_each_sample_once(n, bs, shuffle, drop_last, seed, epoch):
    ld = D.DataLoader(_indexed(n), bs, shuffle=shuffle, seed=seed, drop_last=drop_last)
    ld.set_epoch(epoch)
    batches = list(ld)
    assert len(batches) == len(ld)
    assert all(xb.shape[0] == bs for xb, _ in (batches if drop_last else batches[:-1]))
    ids = np.concatenate([xb.reshape(-1) for xb, _ in batches]).astype(int) if batches else np.array([], int)
    assert len(set(ids.tolist())) == ids.size
    assert ids.size == (n // bs) * bs if drop_last else np.array_equal(np.sort(ids), np.arange(n))


def test_dataset_validation():
    x = np.zeros((4, 1, 2, 2))
    with pytest.raises(ValueError, match="int64"):
        D.Dataset(x=x, y=np.zeros(4, np.int32), classes=2, name="t")
    with pytest.raises(ValueError, match="4 samples but y has 3"):
        D.Dataset(x=x, y=np.zeros(3, np.int64), classes=2, name="t")
    with pytest.raises(ValueError, match=r"allowed range is \[0, 1\]"):
        D.Dataset(x=x, y=np.array([0, 1, 2, 0]), classes=2, name="t")


# ----------------------------------------------------------------------------- synthetic and dispatch


def test_synthetic_deterministic_balanced_learnable():
    a = D.make_synthetic(300, seed=4)
    b = D.make_synthetic(300, seed=4)
    c = D.make_synthetic(300, seed=5)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)
    assert not np.array_equal(a.x, c.x)
    assert a.x.shape == (300, 1, 8, 8) and a.x.dtype == np.float64 and a.y.dtype == np.int64
    assert np.bincount(a.y).tolist() == [30] * 10
    assert D.make_synthetic(7, shape=(3, 4, 4), classes=3, dtype=np.float32).x.shape == (7, 3, 4, 4)
    test = D.make_synthetic(300, seed=4, split="test")
    assert not np.array_equal(test.x, a.x) and not np.array_equal(test.y, a.y)
    # nearest class mean, fitted on train, classifies test well (shared prototypes)
    means = np.stack([a.x[a.y == k].reshape(-1, 64).mean(0) for k in range(10)])
    d = ((test.x.reshape(-1, 1, 64) - means[None]) ** 2).sum(-1)
    assert (d.argmin(1) == test.y).mean() > 0.9
    with pytest.raises(ValueError, match="classes=1"):
        D.make_synthetic(10, classes=1)
    with pytest.raises(ValueError, match="shape"):
        D.make_synthetic(10, shape=(1, 0, 8))


def test_get_dataset_dispatch(tmp_path):
    assert D.get_dataset("digits", split="test").x.shape == (359, 1, 8, 8)
    syn = D.get_dataset("synthetic", split="train", seed=1)
    assert len(syn) == 1000 and len(D.get_dataset("synthetic", split="test")) == 200
    assert len(D.get_dataset("synthetic", n=12, classes=4)) == 12
    write_cifar10(tmp_path)
    assert D.get_dataset("cifar10", root=tmp_path, split="test").name == "cifar10/test"
    with pytest.raises(ValueError, match="digits, cifar10, cifar100, synthetic"):
        D.get_dataset("mnist")
    with pytest.raises(ValueError, match="root=None"):
        D.get_dataset("cifar10")
    with pytest.raises(ValueError, match="takes no root"):
        D.get_dataset("digits", root=tmp_path)
    with pytest.raises(ValueError, match="split='val'"):
        D.get_dataset("synthetic", split="val")


def test_data_package_imports_nothing_else_from_refsnn():
    import ast
    import pathlib

    for path in pathlib.Path(D.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                assert not node.module.startswith("refsnn"), f"{path.name} imports {node.module}"
            if isinstance(node, ast.ImportFrom) and node.level > 1:
                raise AssertionError(f"{path.name} imports from a parent package")
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("refsnn") for a in node.names), path.name
