# maillage image: one image, one process per container (gateway, processors, API, simulators).
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends mosquitto-clients \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY maillage ./maillage
RUN pip install --no-cache-dir .
RUN useradd --system --create-home maillage
USER maillage
ENV MAILLAGE_ENV=production
ENTRYPOINT ["maillage"]
