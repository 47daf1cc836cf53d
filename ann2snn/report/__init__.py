"""Conversion report: accuracy vs T, T*, per-layer table, diagnosis with measured fixes, energy, plots.

    ev = ann2snn.evaluate("model.onnx", (x, y), calib, [8, 16, 32, 64], snn=snn)
    rep = ann2snn.report.build_report(ev, snn, calibration=calib)   # validated dict in rep.doc
    rep.write("out/report")            # report.json, report.md, plots/*.png (with matplotlib)

``report.json`` follows ``ann2snn.report.schema.REPORT_SCHEMA`` (version 1); ``validate_report(doc)``
checks a document against it.
"""

from ann2snn.report.build import Report, build_report, choose_diagnosis_t, report_from_evaluation
from ann2snn.report.energy import energy_estimate
from ann2snn.report.probe import layer_network, layer_samples
from ann2snn.report.schema import REPORT_SCHEMA, SchemaError, validate, validate_report

__all__ = [
    "REPORT_SCHEMA", "Report", "SchemaError", "build_report", "choose_diagnosis_t", "energy_estimate",
    "layer_network", "layer_samples", "report_from_evaluation", "validate", "validate_report",
]
