"""lutnet: binary and LUT neural networks from PyTorch to verified FPGA hardware."""
__version__ = "0.1.0"
