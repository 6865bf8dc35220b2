"""Event data: streams, frames (docs/method.md §14), the DVS-Gesture rule, the event digits, AEDAT readers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refsnn.data import aedat, dvs, event_digits, events
from refsnn.data.events import make_events, to_frames

SETTINGS = dict(derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))


def stream(rng, n, h=6, w=5, t_max=1000):
    return make_events(np.sort(rng.integers(0, t_max, n)), rng.integers(0, w, n), rng.integers(0, h, n),
                       rng.integers(0, 2, n), height=h, width=w)


def test_to_frames_by_hand():
    ev = make_events([0, 10, 20, 30, 40, 90, 100], [0, 1, 1, 0, 2, 2, 0], [0, 0, 1, 1, 0, 0, 1],
                     [1, 0, 1, 1, 0, 1, 1], height=2, width=3)
    # number: d = 7 // 3 = 2 -> slices {0, 1}, {2, 3}, {4, 5, 6}
    f = to_frames(ev, 3, 2, 3, split_by="number")
    assert f.shape == (3, 2, 2, 3)
    assert f[0, 1, 0, 0] == 1 and f[0, 0, 0, 1] == 1 and f[0].sum() == 2
    assert f[1, 1, 1, 1] == 1 and f[1, 1, 1, 0] == 1 and f[1].sum() == 2
    assert f[2, 0, 0, 2] == 1 and f[2, 1, 0, 2] == 1 and f[2, 1, 1, 0] == 1 and f[2].sum() == 3
    # time: span 100, k = (t * 3) // 100 -> 0,0,0,0,1,2,3->2
    g = to_frames(ev, 3, 2, 3, split_by="time")
    assert [g[k].sum() for k in range(3)] == [4, 1, 2]


@settings(max_examples=60, **SETTINGS)
@given(n=st.integers(0, 200), T=st.integers(1, 12), split_by=st.sampled_from(events.SPLIT_BY),
       seed=st.integers(0, 2**32 - 1))
def test_frames_count_every_event_once(n, T, split_by, seed):
    rng = np.random.default_rng(seed)
    ev = stream(rng, n)
    f = to_frames(ev, T, 6, 5, split_by=split_by)
    assert f.shape == (T, 2, 6, 5) and f.sum() == n
    per = f.sum(axis=(1, 2, 3))
    if split_by == "number" and n >= T:
        assert (per[:-1] == n // T).all() and per[-1] == n - (T - 1) * (n // T)
    # the ON channel holds exactly the ON events
    assert f[:, 1].sum() == int((ev["p"] == 1).sum())


@pytest.mark.parametrize("T, expect", [(1, (4, 1)), (2, (10, 2)), (3, (16, 3)), (16, (16, 16))])
def test_gesture_rule(T, expect):
    assert events.gesture_slices(T) == expect
    rng = np.random.default_rng(0)
    ev = stream(rng, 400)
    f = events.gesture_frames(ev, T, 6, 5)
    assert f.shape == (T, 2, 6, 5)
    assert np.array_equal(f, to_frames(ev, expect[0], 6, 5)[:T])


@pytest.mark.parametrize("kw, match", [
    (dict(t=[5, 3]), r"timestamps must be sorted.*t\[1\] = 3 < t\[0\] = 5"),
    (dict(t=[-1, 3]), r"t\[0\] = -1 is not allowed"),
    (dict(x=[0, 5]), r"x\[1\] = 5 is not allowed .*\[0, 4\]"),
    (dict(y=[-1, 0]), r"y\[0\] = -1 is not allowed"),
    (dict(p=[2, 0]), r"p\[0\] = 2 is not allowed.*0 \(OFF\) or 1 \(ON\)"),
])
def test_bad_events_are_value_errors(kw, match):
    args = {**dict(t=[0, 3], x=[0, 1], y=[0, 1], p=[0, 1]), **kw}
    with pytest.raises(ValueError, match=match):
        make_events(**args, height=4, width=5)


def test_bad_frame_arguments():
    ev = make_events([0], [0], [0], [1], height=2, width=2)
    with pytest.raises(ValueError, match=r"T=0 is out of range"):
        to_frames(ev, 0, 2, 2)
    with pytest.raises(ValueError, match=r"split_by='count'"):
        to_frames(ev, 2, 2, 2, split_by="count")
    with pytest.raises(ValueError, match=r"x\[0\] = 0 .*sensor 2x0|width=0"):
        to_frames(ev, 2, 2, 0)
    with pytest.raises(ValueError, match=r"events must be a 1-D array of dtype"):
        to_frames(np.zeros(3), 2, 2, 2)
    with pytest.raises(ValueError, match=r"T=17 is out of range for the DVS-Gesture rule"):
        events.gesture_slices(17)


# ----------------------------------------------------------------------------
# the event digits
# ----------------------------------------------------------------------------

FAST = event_digits.EventDigitsSettings(steps_per_saccade=2)


def test_event_digits_deterministic_and_physical():
    pixels, _ = event_digits.raw_digits()
    imgs = pixels[:20].reshape(-1, 8, 8) / 16.0
    ev1, off1 = event_digits.simulate(imgs, FAST)
    ev2, off2 = event_digits.simulate(imgs, FAST)
    assert np.array_equal(ev1, ev2) and np.array_equal(off1, off2)
    assert off1[0] == 0 and off1[-1] == ev1.size and (np.diff(off1) > 0).all()
    for i in range(20):
        s = ev1[off1[i]:off1[i + 1]]
        events.check_events(s, FAST.sensor, FAST.sensor)
        # the path returns to its start: ON and OFF events roughly balance per sample
        assert 0.3 < (s["p"] == 1).mean() < 0.7
        assert s["t"].max() <= 3 * FAST.saccade_us
    # a static scene (amplitude 0) emits nothing
    still = event_digits.EventDigitsSettings(steps_per_saccade=2, amplitude=0.0)
    ev0, off0 = event_digits.simulate(imgs, still)
    assert ev0.size == 0 and not off0.any()


def test_event_digits_cache_keyed_by_settings(tmp_path):
    d1 = event_digits.load_event_digits("test", T=3, dtype=np.float32, settings=FAST, cache_dir=tmp_path)
    files = sorted(tmp_path.iterdir())
    assert len(files) == 1 and FAST.key() in files[0].name
    assert d1.x.shape == (359, 3, 2, 16, 16) and d1.x.dtype == np.float32 and d1.classes == 10
    d2 = event_digits.load_event_digits("test", T=3, dtype=np.float32, settings=FAST, cache_dir=tmp_path)
    assert np.array_equal(d1.x, d2.x) and len(list(tmp_path.iterdir())) == 1
    other = event_digits.EventDigitsSettings(steps_per_saccade=2, contrast=0.3)
    assert other.key() != FAST.key()
    event_digits.load_event_digits("test", T=3, settings=other, cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 2
    with pytest.raises(ValueError, match=r"size \+ amplitude = 18.0 must fit the sensor"):
        event_digits.EventDigitsSettings(size=16, amplitude=2.0)


def test_default_cache_dir_is_outside_the_package(monkeypatch, tmp_path):
    monkeypatch.delenv("REFSNN_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert event_digits.default_cache_dir() == tmp_path / "refsnn"
    monkeypatch.setenv("REFSNN_CACHE", str(tmp_path / "x"))
    assert event_digits.default_cache_dir() == tmp_path / "x"


# ----------------------------------------------------------------------------
# AEDAT files and the two released data sets, as tiny fake copies written here
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("writer", [aedat.write_aedat2, aedat.write_aedat31])
def test_aedat_round_trip(tmp_path, writer):
    ev = stream(np.random.default_rng(1), 300, h=128, w=128, t_max=5_000_000)
    path = tmp_path / "rec.aedat"
    writer(path, ev)
    back = aedat.read_aedat(path)
    assert np.array_equal(back, ev)


def test_aedat_malformed(tmp_path):
    ev = stream(np.random.default_rng(2), 10, h=128, w=128)
    p2 = tmp_path / "a.aedat"
    aedat.write_aedat2(p2, ev)
    p2.write_bytes(p2.read_bytes()[:-3])
    with pytest.raises(ValueError, match=r"a.aedat: .* not a whole number of 8-byte events"):
        aedat.read_aedat(p2)
    p3 = tmp_path / "b.aedat"
    aedat.write_aedat31(p3, ev)
    p3.write_bytes(p3.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"b.aedat: malformed packet"):
        aedat.read_aedat(p3)
    (tmp_path / "c.aedat").write_bytes(b"hello")
    with pytest.raises(ValueError, match=r"c.aedat is neither AEDAT 2.0 nor 3.1"):
        aedat.read_aedat(tmp_path / "c.aedat")


def fake_cifar10_dvs(root, per_class=3):
    rng = np.random.default_rng(3)
    for c, name in enumerate(dvs.CIFAR10_DVS_CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            writer = aedat.write_aedat2 if i % 2 == 0 else aedat.write_aedat31
            writer(root / name / f"cifar10_{name}_{i}.aedat", stream(rng, 50 + c, h=128, w=128))


def test_cifar10_dvs_fake_copy(tmp_path):
    root, cache = tmp_path / "CIFAR10DVS", tmp_path / "cache"
    fake_cifar10_dvs(root)
    train = dvs.load_cifar10_dvs(root, "train", T=4, size=48, cache_dir=cache)
    test = dvs.load_cifar10_dvs(root, "test", T=4, size=48, cache_dir=cache)
    assert train.x.shape == (20, 4, 2, 48, 48) and test.x.shape == (10, 4, 2, 48, 48)
    assert list(test.y) == list(range(10))
    # every event of the test recording of class 0 lands in the frames
    ev = aedat.read_aedat(root / "airplane" / "cifar10_airplane_2.aedat")
    assert test.x[0].sum() == ev.size
    assert len(list(cache.glob("cifar10_dvs-*.npz"))) == 2
    again = dvs.load_cifar10_dvs(root, "test", T=4, size=48, cache_dir=cache)
    assert np.array_equal(again.x, test.x)
    (root / "truck" / "cifar10_truck_0.aedat").unlink()
    (root / "truck" / "cifar10_truck_1.aedat").unlink()
    (root / "truck" / "cifar10_truck_2.aedat").unlink()
    with pytest.raises(ValueError, match=r"no .aedat files in .*truck; expected layout: root/<class>/"):
        dvs.load_cifar10_dvs(root, "train", cache_dir=cache)
    with pytest.raises(ValueError, match=r"root=.* is not a directory"):
        dvs.load_cifar10_dvs(tmp_path / "missing", "train", cache_dir=cache)


def fake_gesture(root):
    rng = np.random.default_rng(4)
    root.mkdir()
    names = {"train": ["user01_fluorescent.aedat", "user02_led.aedat"], "test": ["user24_natural.aedat"]}
    for split, files in names.items():
        (root / f"trials_to_{split}.txt").write_text("\n".join(files) + "\n")
        for f in files:
            ev = stream(rng, 2000, h=128, w=128, t_max=3_000_000)
            aedat.write_aedat31(root / f, ev)
            (root / f.replace(".aedat", "_labels.csv")).write_text(
                "class,startTime_usec,endTime_usec\n3,100000,1000000\n11,1200000,2900000\n")
    return names


def test_dvs_gesture_fake_copy(tmp_path):
    root = tmp_path / "DvsGesture"
    fake_gesture(root)
    train = dvs.load_dvs_gesture(root, "train", T=2, size=32, cache_dir=tmp_path / "c")
    test = dvs.load_dvs_gesture(root, "test", T=5, size=128, cache_dir=tmp_path / "c")
    assert train.x.shape == (4, 2, 2, 32, 32) and list(train.y) == [2, 10, 2, 10]
    assert test.x.shape == (2, 5, 2, 128, 128)
    ev = aedat.read_aedat(root / "user24_natural.aedat")
    sample = ev[(ev["t"] >= 1200000) & (ev["t"] < 2900000)]
    assert np.array_equal(test.x[1], events.gesture_frames(sample, 5).astype(np.float32))
    (root / "user02_led_labels.csv").write_text("class,startTime_usec,endTime_usec\n12,1,2\n")
    with pytest.raises(ValueError, match=r"user02_led_labels.csv: need 3 columns, class in 1..11"):
        dvs.load_dvs_gesture(root, "train", T=3, cache_dir=tmp_path / "c")
    (root / "trials_to_test.txt").unlink()
    with pytest.raises(ValueError, match=r"missing trials_to_test.txt; expected layout"):
        dvs.load_dvs_gesture(root, "test", cache_dir=tmp_path / "c")
