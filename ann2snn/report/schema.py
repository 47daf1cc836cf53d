"""The documented schema of ``report.json`` (version 1) and a small JSON-Schema-subset validator.

The schema is a plain dict in JSON-Schema style. The validator implements the keywords it uses:
``type`` (a name or a list of names: object, array, string, number, integer, boolean, null),
``enum``, ``const``, ``minimum``, ``maximum``, ``pattern``, ``required``, ``properties``,
``additionalProperties`` (bool or schema), ``propertyNames`` (a string schema), ``items``, ``minItems``
and ``description`` (ignored). No dependency beyond the standard library.

Report layout (every key is required; nullable values say so):

- ``format`` = "ann2snn-report", ``version`` = 1.
- The fields of ``ann2snn.EvaluationReport``: ``model, samples, timesteps, ann_accuracy, ann_source,
  snn_accuracy, agreement, t_star, layers, config, conversion, seconds`` (a report.json is a superset of
  what ``evaluate`` wrote before; fields that EvaluationReport or the simulator's layer statistics gain
  later pass through, while the blocks below are closed: an unknown key there is an error).
  Accuracies are fractions in [0, 1]; maps keyed by T use the decimal string of T ("32").
- ``fixed_point_accuracy``: {T: fraction} of the quantized (Loihi) simulation, or null.
- ``accuracy_table``: one row per T: ``T, ann, snn, delta, agreement, fixed_point``.
- ``t_star_tolerance``: the accuracy tolerance (fraction) that defines T*.
- ``layer_order``: IF layer names in forward order; ``layers[name]`` adds ``index`` (1-based),
  ``label`` ("L3"), ``kind`` (e.g. "conv+maxpool", "residual add"), ``threshold_min``/``threshold_max``,
  ``downstream_macs`` (ANN MACs of the ops this layer feeds) and ``sops_vs_macs`` {T: SOPs/MACs} to the
  per-T statistics of the simulator.
- ``energy``: per T, SOPs per sample, first-layer MACs and the estimated E_SNN/E_ANN for fp32
  (E_MAC 4.6 pJ, E_AC 0.9 pJ) and 8-bit integer (0.23 / 0.03 pJ) operations.
- ``diagnosis``: at one T: the ranked findings (per-layer problem and suggested fix), the measured
  what-if experiments, the best fix, and plain-language ``summary`` sentences.
- ``plots``: whether plots were drawn, the files (relative to the report folder), or the hint to
  install them.
"""

from __future__ import annotations

import re
from typing import Any

SCHEMA_VERSION = 1

_T_KEY = {"pattern": "^[1-9][0-9]*$"}
_FRACTION = {"type": "number", "minimum": 0.0, "maximum": 1.0}
_FRACTION_OR_NULL = {"type": ["number", "null"], "minimum": 0.0, "maximum": 1.0}


def _per_t(value_schema: dict) -> dict:
    return {"type": "object", "propertyNames": _T_KEY, "additionalProperties": value_schema}


_LAYER = {
    "type": "object",
    "description": "one IF layer: static facts plus simulator statistics per T",
    "required": ["neurons", "firing_rate", "saturated_fraction", "silent_fraction", "pearson_r", "relative_error",
                 "sops_per_sample", "threshold_mean", "ann_macs", "index", "label", "kind", "threshold_min",
                 "threshold_max", "downstream_macs", "sops_vs_macs"],
    "properties": {
        "neurons": {"type": "integer", "minimum": 1},
        "firing_rate": _per_t({"type": "number", "minimum": 0.0}),
        "saturated_fraction": _per_t(_FRACTION),
        "silent_fraction": _per_t(_FRACTION),
        "pearson_r": _per_t({"type": ["number", "null"], "minimum": -1.0000001, "maximum": 1.0000001}),
        "relative_error": _per_t({"type": ["number", "null"], "minimum": 0.0}),
        "sops_per_sample": _per_t({"type": "number", "minimum": 0.0}),
        "threshold_mean": {"type": "number", "minimum": 0.0},
        "threshold_min": {"type": "number", "minimum": 0.0},
        "threshold_max": {"type": "number", "minimum": 0.0},
        "ann_macs": {"type": "integer", "minimum": 0},
        "index": {"type": "integer", "minimum": 1},
        "label": {"type": "string", "pattern": "^L[0-9]+$"},
        "kind": {"type": "string"},
        "downstream_macs": {"type": "integer", "minimum": 0},
        "sops_vs_macs": _per_t({"type": ["number", "null"], "minimum": 0.0}),
    },
    "additionalProperties": True,  # further simulator statistics may be added without a new version
}

_ENERGY_FIGURES = {
    "type": "object",
    "required": ["e_mac_pj", "e_ac_pj", "ann_pj", "snn_pj", "ratio"],
    "properties": {
        "e_mac_pj": {"type": "number", "minimum": 0.0},
        "e_ac_pj": {"type": "number", "minimum": 0.0},
        "ann_pj": {"type": "number", "minimum": 0.0},
        "snn_pj": _per_t({"type": "number", "minimum": 0.0}),
        "ratio": _per_t({"type": ["number", "null"], "minimum": 0.0}),
    },
    "additionalProperties": False,
}

_FINDING = {
    "type": "object",
    "required": ["layer", "label", "kind", "problem", "added_error", "relative_error", "pearson_r",
                 "saturated_fraction", "silent_fraction", "firing_rate", "spikes_per_neuron", "suggestion",
                 "sentence", "measured"],
    "properties": {
        "layer": {"type": "string"},
        "label": {"type": "string"},
        "kind": {"type": "string"},
        "problem": {"enum": ["clipping", "quantization", "unevenness", "inherited", "ok"]},
        "added_error": {"type": ["number", "null"]},
        "relative_error": {"type": ["number", "null"]},
        "pearson_r": {"type": ["number", "null"]},
        "saturated_fraction": _FRACTION,
        "silent_fraction": _FRACTION,
        "firing_rate": {"type": "number", "minimum": 0.0},
        "spikes_per_neuron": {"type": "number", "minimum": 0.0},
        "suggestion": {"type": "string", "description": "heuristic, from the statistics"},
        "sentence": {"type": "string"},
        "measured": {"type": ["string", "null"], "description": "what the what-if measured for this layer"},
    },
    "additionalProperties": False,
}

_SCORE = {
    "type": "object",
    "required": ["agreement", "relative_error"],
    "properties": {"agreement": _FRACTION, "relative_error": {"type": "number", "minimum": 0.0}},
    "additionalProperties": False,
}

_WHAT_IF = {
    "type": "object",
    "required": ["layer", "label", "change", "threshold_before", "threshold_after", "method", "score",
                 "gain_agreement", "gain_relative_error"],
    "properties": {
        "layer": {"type": "string"},
        "label": {"type": "string"},
        "change": {"enum": ["raise", "lower"]},
        "threshold_before": {"type": "number", "minimum": 0.0},
        "threshold_after": {"type": "number", "minimum": 0.0},
        "method": {"type": "string"},
        "score": _SCORE,
        "gain_agreement": {"type": "number"},
        "gain_relative_error": {"type": "number"},
    },
    "additionalProperties": False,
}

REPORT_SCHEMA: dict[str, Any] = {
    "$id": "https://ann2snn/report/v1",
    "title": "ann2snn conversion report",
    "type": "object",
    "required": ["format", "version", "model", "samples", "timesteps", "ann_accuracy", "ann_source",
                 "snn_accuracy", "agreement", "t_star", "t_star_tolerance", "layers", "layer_order", "config",
                 "conversion", "seconds", "fixed_point_accuracy", "accuracy_table", "energy", "diagnosis",
                 "plots"],
    "properties": {
        "format": {"const": "ann2snn-report"},
        "version": {"const": SCHEMA_VERSION},
        "model": {"type": "string"},
        "samples": {"type": "integer", "minimum": 1},
        "timesteps": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1},
        "ann_accuracy": _FRACTION,
        "ann_source": {"type": "string"},
        "snn_accuracy": _per_t(_FRACTION),
        "agreement": _per_t(_FRACTION),
        "t_star": {"type": ["integer", "null"], "minimum": 1},
        "t_star_tolerance": _FRACTION,
        "fixed_point_accuracy": {"type": ["object", "null"], "propertyNames": _T_KEY,
                                 "additionalProperties": _FRACTION},
        "accuracy_table": {
            "type": "array", "minItems": 1,
            "items": {
                "type": "object",
                "required": ["T", "ann", "snn", "delta", "agreement", "fixed_point"],
                "properties": {"T": {"type": "integer", "minimum": 1}, "ann": _FRACTION, "snn": _FRACTION,
                               "delta": {"type": "number", "minimum": -1.0, "maximum": 1.0},
                               "agreement": _FRACTION, "fixed_point": _FRACTION_OR_NULL},
                "additionalProperties": False,
            },
        },
        "layer_order": {"type": "array", "items": {"type": "string"}},
        "layers": {"type": "object", "additionalProperties": _LAYER},
        "config": {"type": "object"},
        "conversion": {"type": "object"},
        "seconds": {"type": "object", "additionalProperties": {"type": "number", "minimum": 0.0}},
        "energy": {
            "type": "object",
            "required": ["note", "first_layer_macs", "ann_macs", "sops_per_sample", "fp32", "int8"],
            "properties": {
                "note": {"type": "string"},
                "first_layer_macs": {"type": "integer", "minimum": 0},
                "ann_macs": {"type": "integer", "minimum": 0},
                "sops_per_sample": _per_t({"type": "number", "minimum": 0.0}),
                "fp32": _ENERGY_FIGURES,
                "int8": _ENERGY_FIGURES,
            },
            "additionalProperties": False,
        },
        "diagnosis": {
            "type": "object",
            "required": ["timesteps", "accuracy_loss", "findings", "what_if", "what_if_note", "best_fix",
                         "summary"],
            "properties": {
                "timesteps": {"type": "integer", "minimum": 1},
                "accuracy_loss": {"type": "number"},
                "findings": {"type": "array", "items": _FINDING},
                "what_if": {"type": "array", "items": _WHAT_IF},
                "what_if_note": {"type": "string"},
                "best_fix": {"anyOf": [{"type": "null"}, _WHAT_IF]},
                "summary": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            },
            "additionalProperties": False,
        },
        "plots": {
            "type": "object",
            "required": ["available", "files", "hint"],
            "properties": {
                "available": {"type": "boolean"},
                "files": {"type": "object", "additionalProperties": {"type": "string"}},
                "hint": {"type": ["string", "null"]},
            },
            "additionalProperties": False,
        },
    },
    # EvaluationReport may grow fields (they pass through); the blocks the report adds are closed
    "additionalProperties": True,
}


class SchemaError(ValueError):
    """The document does not match the schema; ``errors`` lists every mismatch with its JSON path."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        shown = "\n".join(f"  {e}" for e in self.errors[:20])
        more = f"\n  ... and {len(self.errors) - 20} more" if len(self.errors) > 20 else ""
        super().__init__(f"report does not match schema v{SCHEMA_VERSION}:\n{shown}{more}")


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def validate(instance: Any, schema: dict, path: str = "$") -> list[str]:
    """All mismatches of ``instance`` against ``schema`` (empty list: valid)."""
    errors: list[str] = []
    if "anyOf" in schema:
        branches = [validate(instance, s, path) for s in schema["anyOf"]]
        if all(branches):
            errors.append(f"{path}: matches none of anyOf ({'; '.join(b[0] for b in branches)})")
        return errors
    if "const" in schema and instance != schema["const"]:
        errors.append(f"{path}: expected {schema['const']!r}, got {instance!r}")
    if "enum" in schema and instance not in schema["enum"]:
        errors.append(f"{path}: {instance!r} is not one of {schema['enum']}")
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        unknown = [n for n in names if n not in _TYPES]
        if unknown:
            raise ValueError(f"schema at {path} uses unknown type(s) {unknown}")
        if not any(_TYPES[n](instance) for n in names):
            errors.append(f"{path}: expected {' or '.join(names)}, got {type(instance).__name__}")
            return errors
    if _TYPES["number"](instance):
        if isinstance(instance, float) and instance != instance:
            errors.append(f"{path}: NaN is not valid JSON")
        if "minimum" in schema and instance < schema["minimum"]:
            errors.append(f"{path}: {instance} < minimum {schema['minimum']}")
        if "maximum" in schema and instance > schema["maximum"]:
            errors.append(f"{path}: {instance} > maximum {schema['maximum']}")
    if isinstance(instance, str) and "pattern" in schema and not re.search(schema["pattern"], instance):
        errors.append(f"{path}: {instance!r} does not match /{schema['pattern']}/")
    if isinstance(instance, dict):
        for key in schema.get("required", ()):
            if key not in instance:
                errors.append(f"{path}: missing required key {key!r}")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        names = schema.get("propertyNames")
        for key, value in instance.items():
            sub = f"{path}.{key}"
            if not isinstance(key, str):
                errors.append(f"{sub}: key is not a string")
                continue
            if names is not None:
                errors.extend(validate(key, dict(names, type="string"), f"{path}[key {key!r}]"))
            if key in props:
                errors.extend(validate(value, props[key], sub))
            elif extra is False:
                errors.append(f"{sub}: unexpected key")
            elif isinstance(extra, dict):
                errors.extend(validate(value, extra, sub))
    if isinstance(instance, list):
        if "minItems" in schema and len(instance) < schema["minItems"]:
            errors.append(f"{path}: {len(instance)} item(s), at least {schema['minItems']} needed")
        if "items" in schema:
            for i, item in enumerate(instance):
                errors.extend(validate(item, schema["items"], f"{path}[{i}]"))
    return errors


def validate_report(doc: dict) -> dict:
    """Raise SchemaError listing every mismatch of ``doc`` against REPORT_SCHEMA; return ``doc`` if valid.

    Beyond the schema it checks cross-references: every T of ``timesteps`` appears in each per-T map,
    and ``layer_order`` lists exactly the keys of ``layers``.
    """
    errors = validate(doc, REPORT_SCHEMA)
    if not errors:
        ts = {str(t) for t in doc["timesteps"]}
        for key in ("snn_accuracy", "agreement"):
            if set(doc[key]) != ts:
                errors.append(f"$.{key}: keys {sorted(doc[key])} differ from timesteps {sorted(ts)}")
        if sorted(doc["layer_order"]) != sorted(doc["layers"]):
            errors.append("$.layer_order: does not list exactly the keys of $.layers")
        for name, layer in doc["layers"].items():
            for key in ("firing_rate", "pearson_r", "relative_error", "sops_per_sample"):
                if set(layer[key]) != ts:
                    errors.append(f"$.layers.{name}.{key}: keys differ from timesteps")
        if [row["T"] for row in doc["accuracy_table"]] != sorted(doc["timesteps"]):
            errors.append("$.accuracy_table: rows do not follow timesteps")
    if errors:
        raise SchemaError(errors)
    return doc
