"""Loihi backend: netx HDF5 model + reader/writer, bit-exact fixed-point simulator, hardware limits."""

from ann2snn.backends.loihi.fixed_point import (
    FixedPointConfig,
    FixedPointResult,
    netx_dense_weights,
    simulate_fixed_point,
)
from ann2snn.backends.loihi.netx import (
    DEFAULT_DENSE_NEURON,
    ConvLayer,
    DenseLayer,
    FlattenLayer,
    InputLayer,
    NetxNetwork,
    NeuronParams,
    chw_to_lava,
    lava_to_chw,
    read_netx,
    write_netx,
)
from ann2snn.backends.loihi.profile import (
    LOIHI1,
    LOIHI2,
    LayerResources,
    LoihiProfile,
    ResourceEstimate,
    check_network,
    estimate_resources,
    validate_network,
)

__all__ = [
    "ConvLayer", "DEFAULT_DENSE_NEURON", "DenseLayer", "FixedPointConfig", "FixedPointResult", "FlattenLayer",
    "InputLayer", "LOIHI1", "LOIHI2", "LayerResources", "LoihiProfile", "NetxNetwork", "NeuronParams",
    "ResourceEstimate", "check_network", "chw_to_lava", "estimate_resources", "lava_to_chw", "netx_dense_weights",
    "read_netx", "simulate_fixed_point", "validate_network", "write_netx",
]

# Export of a converted SpikingNetwork (quantization, checks, sidecar), added with the export module.
from ann2snn.backends.loihi.export import (  # noqa: E402
    LoihiExport,
    OverflowEvent,
    check_loihi,
    export_loihi,
    load_loihi,
)
from ann2snn.backends.loihi.quantize import (  # noqa: E402
    HostLayer,
    LayerQuantization,
    QuantizationOptions,
    lower_graph,
    search_scale,
)

__all__ += [
    "HostLayer", "LayerQuantization", "LoihiExport", "OverflowEvent", "QuantizationOptions", "check_loihi",
    "export_loihi", "load_loihi", "lower_graph", "search_scale",
]
