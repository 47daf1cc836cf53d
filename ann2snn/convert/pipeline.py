"""``convert``: ONNX model (or IR graph) + calibration data -> SpikingNetwork.

Steps: import -> simplify passes -> plan spiking points -> calibrate thresholds -> build the spiking
graph -> bias correction (optional) -> choice of initial potential and bias correction (``auto``,
scored on a held-out part of the calibration data against the ANN, never on evaluation data).
The shared work lives in ``ConversionSession``; ``ConversionConfig(auto=True)`` runs ``tune`` first.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from ann2snn.config import ConversionConfig
from ann2snn.convert.session import ConversionSession
from ann2snn.convert.tuning import tune
from ann2snn.errors import DataError
from ann2snn.network import SpikingNetwork

log = logging.getLogger(__name__)


def convert(model, calibration=None, config: ConversionConfig | None = None, *, scales=None,
            progress: bool = False) -> SpikingNetwork:
    """Convert a trained ANN into a SpikingNetwork.

    model: path to an .onnx file, an onnx.ModelProto, or an ann2snn IR Graph.
    calibration: (N, *input shape) float array of real, preprocessed training images.
    scales: optional thresholds {spiking tensor: per-channel array} (e.g. from load_scales) instead of
        calibrating; they are checked against the model.
    """
    config = config or ConversionConfig()
    auto = "auto" in (config.v_init, config.bias_correction, config.threshold_scale)
    if config.auto:
        if scales is not None:
            raise DataError("ConversionConfig(auto=True) searches the thresholds itself: do not pass scales")
        session = ConversionSession(model, calibration, config.replace(auto=False), holdout=True,
                                    progress=progress)
        tuning = tune(session, target_timesteps=config.calibration_timesteps, progress=progress)
        log.info("auto: tuned config %s (agreement %.4f on %d held-out images)", tuning.config.to_dict(),
                 tuning.best["agreement"], tuning.holdout_samples)
        tuned = tuning.config
        if tuned != session.config:  # another max-pool mode or statistic: a session of the chosen config
            auto = "auto" in (tuned.v_init, tuned.bias_correction, tuned.threshold_scale)
            session = ConversionSession(session.graph, calibration, tuned, holdout=auto, progress=progress)
        net = session.choose(tuned)
        return replace(net, record=net.record.replace(tuning={k: v for k, v in tuning.to_dict().items()
                                                              if k not in ("holdout_indices",)}))
    session = ConversionSession(model, calibration, config, holdout=auto, progress=progress)
    return session.choose(config, scales)
