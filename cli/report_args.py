"""The report's command-line options and console summary (``ann2snn evaluate --report DIR``, ``convert``)."""

from __future__ import annotations

import logging
from pathlib import Path

from ann2snn.report.build import build_report
from ann2snn.report.plots import HINT, available

log = logging.getLogger("ann2snn.cli")


def add_report_arguments(p, *, flag: str) -> None:
    """``flag``: "report" adds ``--report DIR`` (off by default); "no-report" adds ``--no-report``."""
    g = p.add_argument_group("report (report.json, report.md, plots/)")
    if flag == "report":
        g.add_argument("--report", metavar="DIR",
                       help="write the full report (accuracy vs T, per-layer table, diagnosis, energy, plots) here")
    else:
        g.add_argument("--no-report", action="store_true",
                       help="write only the accuracy JSON, without report.md, diagnosis and plots")
    g.add_argument("--report-samples", type=int, default=200, metavar="N",
                   help="calibration images simulated to measure one-layer fixes (default 200; 0 skips them)")
    g.add_argument("--what-if-layers", type=int, default=3, metavar="N",
                   help="how many of the worst layers get a measured threshold fix (default 3)")
    g.add_argument("--diagnose-at", type=int, metavar="T",
                   help="the T the diagnosis looks at (default 32, or the closest simulated T)")
    g.add_argument("--no-plots", action="store_true", help="skip the PNG plots even if matplotlib is installed")


def write_report(out_dir: Path, evaluation, snn, calibration, args, *, fixed_point_accuracy=None) -> dict:
    """Build the report of ``evaluation`` and write it into ``out_dir``; print where it went."""
    rep = build_report(evaluation, snn, calibration=calibration, fixed_point_accuracy=fixed_point_accuracy,
                       diagnosis_t=getattr(args, "diagnose_at", None),
                       what_if_samples=max(0, int(getattr(args, "report_samples", 200) or 0)),
                       what_if_layers=max(1, int(getattr(args, "what_if_layers", 3) or 1)),
                       scatter_samples=16, progress=not getattr(args, "quiet", False))
    written = rep.write(out_dir, plots=not getattr(args, "no_plots", False))
    for line in rep.doc["diagnosis"]["summary"]:
        print(f"  - {line}")
    if not getattr(args, "no_plots", False) and not available():
        print(f"  (no plots: {HINT})")
    return written
