# Production Triton: NVIDIA's container (native onnxruntime backend for the tower) plus what the
# Python-backend models import. The model repository is NOT baked in: compose mounts it at /models.
FROM nvcr.io/nvidia/tritonserver:24.10-py3

# The Python backend stub runs the container's python3 (3.10); numpy stays <2 like the gateway.
# onnxruntime is deliberately absent: in production text_encoder runs on the native backend
# (tritonserver --model-config-name=production).
RUN python3 -m pip install --no-cache-dir \
        tokenizers==0.23.3 \
        numpy==1.26.4 \
        pillow==12.3.0 \
    && python3 -c "import numpy, tokenizers, PIL; assert numpy.__version__ == '1.26.4'"

COPY triton-entrypoint.sh /opt/epithre/triton-entrypoint.sh
ENTRYPOINT ["/opt/epithre/triton-entrypoint.sh"]
