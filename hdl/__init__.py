"""Amaranth hardware generated from the network IR (never from torch).

>>> from lutnet.hdl import LutnetTop, PipelineOptions, generate
"""
from .emit import DESIGN_FILE, PORTS, TOP_NAME, VERILOG_FILE, design_description, generate, to_verilog
from .layers import (EncoderComponent, GroupSumHeadComponent, LutLayerComponent, XnorHeadComponent,
                     XnorLayerComponent, class_bits, lut_function, lut_support)
from .options import PipelineOptions
from .top import CreditBuffer, LutnetTop

__all__ = [
    "LutnetTop", "CreditBuffer", "PipelineOptions", "generate", "to_verilog", "design_description",
    "EncoderComponent", "XnorLayerComponent", "XnorHeadComponent", "LutLayerComponent",
    "GroupSumHeadComponent", "lut_support", "lut_function", "class_bits",
    "TOP_NAME", "VERILOG_FILE", "DESIGN_FILE", "PORTS",
]
