"""Data sources: image folders, CIFAR archives (python and binary), .npy, preprocessing presets, selection.

Every tree and archive is generated here; nothing is downloaded.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ann2snn
from ann2snn.cli.main import main
from ann2snn.data import DataStream, Preprocessing, open_source, preset
from ann2snn.errors import DataError

RNG = np.random.default_rng(0)


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _tree(root: Path, classes: dict[str, int], size=(8, 8), mode_rgb=True) -> dict[Path, np.ndarray]:
    written = {}
    for name, n in classes.items():
        for i in range(n):
            a = RNG.integers(0, 256, size + ((3,) if mode_rgb else ()), dtype=np.uint8)
            p = root / name / f"img{i:02d}.png"
            _png(p, a)
            written[p] = a
    return written


# ---------------------------------------------------------------------------------------------- image folders


def test_image_folder_follows_imagefolder_semantics(tmp_path):
    written = _tree(tmp_path, {"zebra": 2, "ant": 3, "mole": 1})
    (tmp_path / "notes.txt").write_text("not an image")
    src = open_source(tmp_path)
    assert src.classes == ("ant", "mole", "zebra") and src.has_labels and len(src) == 6
    stream = DataStream.of(src, Preprocessing(channels=3))
    x, y = stream.read_all(batch_size=4)
    assert y.tolist() == [0, 0, 0, 1, 2, 2]  # classes sorted by name, files sorted inside each
    first = written[tmp_path / "ant" / "img00.png"]
    np.testing.assert_array_equal(x[0], first.transpose(2, 0, 1).astype(np.float32))
    assert stream.describe()["classes"] == ["ant", "mole", "zebra"]


def test_flat_folder_is_unlabeled_calibration_data(tmp_path):
    for i in range(3):
        _png(tmp_path / f"{i}.png", RNG.integers(0, 256, (6, 6), dtype=np.uint8))
    src = open_source(tmp_path)
    assert not src.has_labels and src.classes is None
    x, y = DataStream.of(src, Preprocessing(scale=1 / 255, channels=1)).read_all()
    assert x.shape == (3, 1, 6, 6) and y is None and x.max() <= 1.0


def test_empty_folder_truncated_jpeg_and_mixed_sizes(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no images found"):
        open_source(empty)
    bad = tmp_path / "bad"
    _tree(bad, {"a": 1})
    buf = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    (bad / "a" / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(DataError, match="cut.jpg"):
        DataStream.of(open_source(bad), Preprocessing(channels=3)).read_all()
    mixed = tmp_path / "mixed"
    _png(mixed / "a" / "small.png", RNG.integers(0, 256, (10, 12, 3), dtype=np.uint8))
    _png(mixed / "b" / "large.png", RNG.integers(0, 256, (40, 30, 3), dtype=np.uint8))
    with pytest.raises(DataError, match="different sizes.*--resize"):
        DataStream.of(open_source(mixed), Preprocessing(channels=3)).read_all()
    x, _ = DataStream.of(open_source(mixed), Preprocessing(channels=3, resize=16, crop=8)).read_all()
    assert x.shape == (2, 3, 8, 8)


def test_empty_class_folder_is_named(tmp_path):
    _tree(tmp_path, {"a": 1})
    (tmp_path / "b").mkdir()
    with pytest.raises(DataError, match=r"\['b'\]"):
        open_source(tmp_path)


# ---------------------------------------------------------------------------------------------- preprocessing


def test_resize_and_center_crop_follow_torchvision():
    pre = Preprocessing(resize=256, crop=224, channels=3)
    img = Image.fromarray(RNG.integers(0, 256, (300, 400, 3), dtype=np.uint8))
    out = pre.fit_image(img)
    assert out.shape == (224, 224, 3)
    # torchvision: shorter side 300 -> 256, longer 400 -> int(256 * 400 / 300) = 341; crop offsets round((h-224)/2)
    resized = np.asarray(img.resize((341, 256), Image.BILINEAR))
    np.testing.assert_array_equal(out, resized[16:240, 58:282])
    small = Preprocessing(crop=(4, 6)).fit_image(np.ones((2, 2), np.uint8))  # padded with zeros, as CenterCrop does
    assert small.shape == (4, 6) and small.sum() == 4


def test_presets_order_of_operations():
    img = np.zeros((1, 2, 2, 3), np.uint8)
    img[..., 0] = 255  # pure red
    bgr = preset("caffe").apply(img, geometry=False)
    np.testing.assert_allclose(bgr[0, :, 0, 0], [0 - 104.0, 0 - 117.0, 255 - 123.0])  # blue first
    rgb = preset("imagenet").apply(img, geometry=False)
    np.testing.assert_allclose(rgb[0, :, 0, 0], [(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225], rtol=1e-6)
    with pytest.raises(DataError, match="unknown preprocessing preset"):
        preset("vgg")
    assert Preprocessing.from_dict(preset("caffe").to_dict()) == preset("caffe")


# ---------------------------------------------------------------------------------------------- CIFAR


def _cifar_python(root: Path, variant: str, n_per_batch: int = 5) -> dict[str, tuple[np.ndarray, list[int]]]:
    """A CIFAR python-version folder, pickled as the authors' files are (protocol 2, bytes keys)."""
    root.mkdir(parents=True)
    batches = {}
    names = ([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]) if variant == "cifar10" else ["train", "test"]
    label_key = b"labels" if variant == "cifar10" else b"fine_labels"
    classes = 10 if variant == "cifar10" else 100
    for name in names:
        data = RNG.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        labels = RNG.integers(0, classes, n_per_batch).tolist()
        (root / name).write_bytes(pickle.dumps({b"batch_label": name.encode(), label_key: labels, b"data": data,
                                                b"filenames": [b"x.png"] * n_per_batch}, protocol=2))
        batches[name] = (data, labels)
    meta_key = b"label_names" if variant == "cifar10" else b"fine_label_names"
    (root / ("batches.meta" if variant == "cifar10" else "meta")).write_bytes(
        pickle.dumps({meta_key: [f"class{i}".encode() for i in range(classes)]}, protocol=2))
    return batches


def _targz(folder: Path, out: Path) -> Path:
    with tarfile.open(out, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return out


def test_cifar10_python_archive_and_folder(tmp_path):
    batches = _cifar_python(tmp_path / "cifar-10-batches-py", "cifar10")
    archive = _targz(tmp_path / "cifar-10-batches-py", tmp_path / "cifar-10-python.tar.gz")
    for path in (archive, tmp_path / "cifar-10-batches-py", tmp_path):
        test = open_source(path, split="test")
        assert test.classes[:2] == ("class0", "class1") and len(test) == 5
        x, y = test.read(np.arange(5), Preprocessing())
        data, labels = batches["test_batch"]
        np.testing.assert_array_equal(x, data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        assert y.tolist() == labels
        train = open_source(path, split="train")
        assert len(train) == 25
        x, y = train.read(np.array([0, 7, 24]), Preprocessing())
        assert y.tolist() == [batches["data_batch_1"][1][0], batches["data_batch_2"][1][2],
                              batches["data_batch_5"][1][4]]


def test_cifar100_python_and_binary(tmp_path):
    batches = _cifar_python(tmp_path / "cifar-100-python", "cifar100", n_per_batch=4)
    src = open_source(tmp_path / "cifar-100-python", split="train")
    assert len(src.classes) == 100 and src.read(np.arange(4), Preprocessing())[1].tolist() == batches["train"][1]
    binary = tmp_path / "cifar-100-binary"
    binary.mkdir()
    recs = []
    for i in range(3):  # record: coarse label, fine label, 3072 pixels (R plane, G plane, B plane)
        recs.append(bytes([i, 10 + i]) + bytes(RNG.integers(0, 256, 3072, dtype=np.uint8)))
    (binary / "test.bin").write_bytes(b"".join(recs))
    (binary / "train.bin").write_bytes(b"".join(recs))
    (binary / "fine_label_names.txt").write_text("\n".join(f"c{i}" for i in range(100)))
    src = open_source(binary, split="test")
    x, y = src.read(np.array([2, 0]), Preprocessing())
    assert y.tolist() == [12, 10]
    np.testing.assert_array_equal(x[0, :, :, 0].reshape(-1), np.frombuffer(recs[2][2:1026], np.uint8))
    (binary / "test.bin").write_bytes(b"".join(recs)[:-5])
    with pytest.raises(DataError, match="truncated"):
        open_source(binary, split="test")


class _RunsACommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_cifar_pickle_is_refused_and_nothing_runs(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    _cifar_python(root, "cifar10")
    marker = tmp_path / "pwned"
    (root / "test_batch").write_bytes(pickle.dumps({b"data": _RunsACommand(marker), b"labels": [0]}, protocol=2))
    # the bare pickle would run it: the file really is hostile
    with pytest.raises(DataError, match="posix.system|os.system"):
        open_source(root, split="test")
    assert not marker.exists()
    _targz(root, tmp_path / "evil.tar.gz")
    with pytest.raises(DataError, match="refused"):
        open_source(tmp_path / "evil.tar.gz", split="test")
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------- npy, selection


def test_npy_is_memory_mapped_and_selection_is_seeded(tmp_path):
    x = RNG.integers(0, 256, (50, 4, 4), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    src = open_source(tmp_path / "x.npy")
    assert isinstance(src.x, np.memmap) and not src.has_labels
    a = DataStream.of(src, subset=10, seed=3)
    b = DataStream.of(src, subset=10, seed=3)
    assert a.indices.tolist() == b.indices.tolist() == sorted(a.indices.tolist())
    assert DataStream.of(src, subset=10, seed=4).indices.tolist() != a.indices.tolist()
    assert DataStream.of(src, limit=7).indices.tolist() == list(range(7))
    with pytest.raises(DataError, match="more than the 50"):
        DataStream.of(src, subset=51)


def test_stream_reads_only_the_batches_asked_for(tmp_path):
    _tree(tmp_path, {"a": 6, "b": 6})
    src = open_source(tmp_path)
    reads = []
    real = src.read
    src.read = lambda idx, pre: reads.append(list(idx)) or real(idx, pre)
    stream = DataStream.of(src, Preprocessing(channels=3), subset=4, seed=0)
    got = list(stream.iter_batches([1], batch_size=2, workers=0))
    assert len(got) == 1 and got[0][0] == 1 and reads == [stream.indices[2:4].tolist()]


def test_loader_workers_give_the_same_batches_and_clear_errors(tmp_path):
    _tree(tmp_path, {"a": 5, "b": 4})
    stream = DataStream.of(open_source(tmp_path), Preprocessing(channels=3))
    serial = list(stream.iter_batches([0, 1, 2], 3, workers=0))
    parallel = list(stream.iter_batches([0, 1, 2], 3, workers=2))
    for (b0, x0, y0), (b1, x1, y1) in zip(serial, parallel):
        assert b0 == b1 and np.array_equal(x0, x1) and np.array_equal(y0, y1)
    (tmp_path / "b" / "img03.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="img03.png"):
        list(stream.iter_batches([0, 1, 2], 3, workers=2))


# ---------------------------------------------------------------------------------------------- unlabeled calibration


def test_unlabeled_calibration_through_the_cli_and_the_api(tmp_path, capsys):
    sample = ann2snn.data.load_zoo_sample("lenet_bn_maxpool", raw=True)
    np.savez(tmp_path / "calib.npz", x=sample.calib_x[:64])  # images only: calibration never needs labels
    np.savez(tmp_path / "test.npz", x=sample.test_x[:20], y=sample.test_y[:20])
    code = main(["-q", "evaluate", "lenet_bn_maxpool", "--calib", str(tmp_path / "calib.npz"), "--data",
                 str(tmp_path / "test.npz"), "--timesteps", "8", "--v-init", "0.5", "--bias-correction", "off",
                 "--json", str(tmp_path / "r.json")])
    assert code == 0, capsys.readouterr().err
    folder = tmp_path / "calib_images"
    for i, img in enumerate(sample.calib_x[:16]):
        _png(folder / f"{i:03d}.png", img)
    calib, labels = DataStream.of(open_source(folder), sample.preprocessing).read_all()
    assert labels is None
    np.testing.assert_array_equal(calib, sample.preprocessing.apply(sample.calib_x[:16]))
    snn = ann2snn.convert(ann2snn.data.load_zoo_manifest("lenet_bn_maxpool")["model_path"], calib,
                          ann2snn.ConversionConfig(v_init=0.5, bias_correction=False))
    assert snn.spiking_layers
    code = main(["-q", "evaluate", "lenet_bn_maxpool", "--calib", str(folder), "--data", str(folder),
                 "--timesteps", "8"])
    assert code == DataError.exit_code and "needs labels" in capsys.readouterr().err
