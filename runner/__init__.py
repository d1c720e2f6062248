"""Local runner: the tritonserver bundled in nvidia-pytriton, plus the gateway, on loopback."""
