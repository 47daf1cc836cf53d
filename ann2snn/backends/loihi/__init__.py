"""Loihi backend internals: netx HDF5 model and reader/writer (``netx``), bit-exact fixed-point simulator
(``fixed_point``), hardware limits (``profile``), quantization (``quantize``) and the export of a converted
network (``export``).

The public API is ``ann2snn.loihi`` (export, check, load, input encoding, fixed-point simulation); this
package re-exports nothing, so each name has one public path.
"""
