"""The typed intermediate representation shared by every stage (see ``nodes`` for the conventions)."""

from ann2snn.ir.graph import Graph, TensorSpec, topological_sort
from ann2snn.ir.nodes import (
    ANN_OPS, Add, AvgPool2d, Concat, Conv2d, Dense, Flatten, GlobalAvgPool, GlobalMaxPool, MaxPool2d, Node,
    ReLU, Reshape, ScaleShift, Softmax, Transpose,
)

__all__ = [
    "ANN_OPS", "Add", "AvgPool2d", "Concat", "Conv2d", "Dense", "Flatten", "GlobalAvgPool", "GlobalMaxPool",
    "Graph", "MaxPool2d", "Node", "ReLU", "Reshape", "ScaleShift", "Softmax", "TensorSpec", "Transpose",
    "topological_sort",
]
