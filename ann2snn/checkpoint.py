"""Resumable evaluations: partial results on disk, written atomically, refused when they belong to another run.

A checkpoint folder holds

    manifest.json            what the run is: model, data, conversion, timesteps, batching (its fingerprint)
    network/                 the converted network (a resumed run does not convert again)
    batches-<first>-<last>.npz   results of a group of evaluation batches (labels, ANN and SNN predictions,
                             per-layer sums), written by the rank that simulated them, never rewritten

Results are kept per batch, not per rank, so a run killed at any point resumes with any number of ranks and
sums the per-layer statistics in batch order: the final report is identical to an uninterrupted run's.
Every file is written to a temporary name and renamed into place; a leftover temporary file is ignored.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ann2snn.errors import CheckpointMismatchError, DataError
from ann2snn.fileio import write_bytes_atomic, write_json_atomic
from ann2snn.network import SpikingNetwork, load

__all__ = ["BatchRecord", "EvaluationCheckpoint", "array_digest"]

log = logging.getLogger(__name__)

FORMAT = "ann2snn-evaluation-checkpoint"
VERSION = 1


def array_digest(*arrays) -> str:
    """sha256 of arrays (shape, dtype and bytes), for fingerprints."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclass
class BatchRecord:
    """What one evaluation batch contributes to the report."""

    batch: int
    labels: np.ndarray  # (n,) int64
    ann_predictions: np.ndarray  # (n,) int64
    snn_predictions: np.ndarray  # (len(timesteps), n) int64
    layer_sums: np.ndarray  # (layers, len(timesteps), len(LAYER_SUM_FIELDS)) float64


_RECORD_ARRAYS = ("labels", "ann_predictions", "snn_predictions", "layer_sums")


class EvaluationCheckpoint:
    """The checkpoint folder of one evaluation, identified by ``fingerprint`` (a JSON-ready dict)."""

    def __init__(self, directory, fingerprint: dict):
        self.dir = Path(directory)
        self.fingerprint = json.loads(json.dumps(fingerprint))  # what the manifest will read back

    @property
    def network_dir(self) -> Path:
        return self.dir / "network"

    def open(self) -> None:
        """Create the folder, or check that the one there belongs to this run (else refuse it)."""
        manifest = self.dir / "manifest.json"
        if self.dir.exists() and not self.dir.is_dir():
            raise DataError(f"checkpoint {self.dir}: exists and is not a folder")
        if manifest.is_file():
            try:
                doc = json.loads(manifest.read_text())
            except (OSError, ValueError) as e:
                raise DataError(f"checkpoint {manifest}: unreadable ({e}); use another --checkpoint folder") from None
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise CheckpointMismatchError(f"checkpoint {self.dir}: not an ann2snn evaluation checkpoint")
            if doc.get("version") != VERSION:
                raise CheckpointMismatchError(f"checkpoint {self.dir}: version {doc.get('version')}, this ann2snn "
                                              f"reads version {VERSION}; use another --checkpoint folder")
            theirs = doc.get("run", {})
            differ = sorted(k for k in set(theirs) | set(self.fingerprint) if theirs.get(k) != self.fingerprint.get(k))
            if differ:
                raise CheckpointMismatchError(
                    f"checkpoint {self.dir} belongs to another run: its {', '.join(differ)} differ(s) from this "
                    "one's; nothing was mixed in. Rerun with the same arguments, model and data to resume, or use "
                    "another --checkpoint folder (or delete this one) to start over")
            return
        if self.dir.is_dir() and any(p for p in self.dir.iterdir() if not p.name.startswith(".")):
            raise DataError(f"checkpoint {self.dir}: the folder holds files but no manifest.json: not a checkpoint "
                            "of ours; give an empty or new folder")
        self.dir.mkdir(parents=True, exist_ok=True)
        # several ranks may race here on a shared folder: they write the same bytes, the last rename wins
        write_json_atomic(manifest, {"format": FORMAT, "version": VERSION, "run": self.fingerprint})

    # -- the converted network -----------------------------------------------------------------------
    def load_network(self) -> SpikingNetwork | None:
        if not (self.network_dir / "network.json").is_file():
            return None
        log.info("checkpoint %s: using the network converted before", self.dir)
        return load(self.network_dir)

    def save_network(self, snn: SpikingNetwork) -> None:
        snn.save(self.network_dir, overwrite=True)

    # -- batch results --------------------------------------------------------------------------------
    def save_records(self, records: list[BatchRecord]) -> None:
        """One new file for these batches (written atomically; existing files are never rewritten)."""
        if not records:
            return
        ids = [r.batch for r in records]
        arrays = {"batches": np.asarray(ids, np.int64)}
        for r in records:
            for key in _RECORD_ARRAYS:
                arrays[f"{r.batch}.{key}"] = getattr(r, key)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        write_bytes_atomic(self.dir / f"batches-{min(ids):07d}-{max(ids):07d}.npz", buf.getvalue())

    def load_records(self) -> dict[int, BatchRecord]:
        """Every batch result stored so far, by batch index."""
        out: dict[int, BatchRecord] = {}
        for p in sorted(self.dir.glob("batches-*.npz")):
            try:
                with np.load(p, allow_pickle=False) as z:
                    for b in z["batches"].tolist():
                        out[int(b)] = BatchRecord(int(b), *(z[f"{b}.{key}"] for key in _RECORD_ARRAYS))
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
                raise DataError(f"checkpoint {p}: damaged ({type(e).__name__}: {e}); delete this file to redo "
                                "its batches") from None
        return out
