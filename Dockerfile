# voice-engine: a slim, non-root image of the gRPC server (deploy/k8s runs it).
#   docker build -t voice-engine:0.1.0 .
#   docker run --rm -p 50051:50051 voice-engine:0.1.0
# Everything, the speech models included, is installed at build time from PyPI: the
# embedded providers ship their models inside their wheels (PocketSphinx acoustic model and
# dictionary, eSpeak NG data, WebRTC VAD); Smart Turn's model is extracted from a pinned
# wheel by scripts/fetch_turn_model.py. Nothing is downloaded when a pod starts.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- build: a venv with the app
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Only what the package needs (.dockerignore keeps the context to these).
COPY pyproject.toml README.md ./
COPY generated ./generated
COPY engine ./engine
COPY adapters ./adapters
# Smart Turn's model file is taken from a wheel pinned by hash (pipecat itself is not
# installed) into /opt/venv/share/voice-engine/models/, where the turn detector finds it.
COPY requirements/turn-model.txt ./requirements/
COPY scripts/fetch_turn_model.py ./scripts/
RUN pip install --no-cache-dir . \
    && python scripts/fetch_turn_model.py \
    && pip uninstall --yes pip setuptools wheel
# The models are really there and loadable: validate the bundled assistants (builds their
# providers' configuration) and open the model files the embedded providers use.
RUN voice-engine agents validate \
    && python -c "import pathlib, pocketsphinx, espeakng_loader; \
assert pathlib.Path(pocketsphinx.get_model_path('en-us/cmudict-en-us.dict')).is_file(); \
assert pathlib.Path(espeakng_loader.get_library_path()).is_file(); \
assert pathlib.Path(espeakng_loader.get_data_path()).is_dir()" \
    && python -c "from adapters.turn.smart_turn import SmartTurnDetector; \
SmartTurnDetector().check(bytes(32000))"

# ---------------------------------------------------------------- runtime: venv only, no root
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="voice-engine" \
      org.opencontainers.image.description="Real-time full-duplex voice conversations over gRPC"
RUN groupadd --system --gid 10001 engine \
    && useradd --system --uid 10001 --gid engine --no-create-home --shell /usr/sbin/nologin engine \
    && mkdir -p /var/lib/voice-engine \
    && chown engine:engine /var/lib/voice-engine
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ENGINE_HOST=0.0.0.0 \
    ENGINE_PORT=50051 \
    HISTORY_SPOOL_PATH=/var/lib/voice-engine/history.sqlite3
USER 10001:10001
WORKDIR /var/lib/voice-engine
EXPOSE 50051
# Kubernetes probes use gRPC health (grpc.health.v1) on the same port; Docker has no gRPC
# HEALTHCHECK without an extra binary, so there is none here.
ENTRYPOINT ["voice-engine"]
CMD ["serve"]
