"""Native CPU (vq_cpu.cpp, built by cpu_extension.py) and Triton kernels of the quantizer, and the passes that
use them (fused_quantize.py)."""
