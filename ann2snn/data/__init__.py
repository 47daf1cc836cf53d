"""Data in: image arrays (IDX, npz, npy), image folders, CIFAR archives, preprocessing, the model zoo's sample.

Every problem with a data file or an array raises :class:`~ann2snn.errors.DataError`, naming the file (or the
array) and what is wrong with it.

- :mod:`.arrays`: :func:`load_idx`, :func:`load_npz`, :func:`load_npy`, :func:`load_dataset`,
  :func:`load_fashion_mnist`, :func:`iter_batches`;
- :mod:`.preprocessing`: :class:`Preprocessing` (resize, crop, channel order, scale, mean, std, layout) and
  the named :data:`PRESETS` (imagenet, caffe, cifar10, mnist);
- :mod:`.sources`: :func:`open_source` (one reader per format behind :class:`DataSource`) and
  :class:`DataStream` (a source, its preprocessing and the chosen images, read batch by batch);
- :mod:`.cifar`: the CIFAR-10/100 readers and the restricted unpickler;
- :mod:`.zoo`: the bundled model zoo.
"""

from ann2snn.data.arrays import (
    FASHION_MNIST_CLASSES, FASHION_MNIST_ROOT, iter_batches, load_dataset, load_fashion_mnist, load_idx, load_npy,
    load_npz, read_idx,
)
from ann2snn.data.preprocessing import PRESETS, Preprocessing, preset
from ann2snn.data.sources import (
    IMAGE_EXTENSIONS, ArraySource, CifarSource, DataSource, DataStream, ImageFolderSource, open_source,
)
from ann2snn.data.zoo import ZooSample, load_zoo_manifest, load_zoo_sample, zoo_model_dir

__all__ = [
    "ArraySource", "CifarSource", "DataSource", "DataStream", "FASHION_MNIST_CLASSES", "FASHION_MNIST_ROOT",
    "IMAGE_EXTENSIONS", "ImageFolderSource", "PRESETS", "Preprocessing", "ZooSample", "iter_batches",
    "load_dataset", "load_fashion_mnist", "load_idx", "load_npy", "load_npz", "load_zoo_manifest",
    "load_zoo_sample", "open_source", "preset", "read_idx", "zoo_model_dir",
]
