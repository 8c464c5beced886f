# invsync worker image; the same image runs the mock Increff and mock marketplace in
# docker-compose.yml. Build from the repository root: `docker build -t invsync .`
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    INVSYNC_DATA_DIR=/var/lib/invsync \
    INVSYNC_WEB_HOST=0.0.0.0 \
    INVSYNC_WEB_PORT=6066

WORKDIR /app
COPY pyproject.toml README.md ./
COPY models ./models
COPY connectors ./connectors
COPY streams ./streams
COPY invsync ./invsync
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /var/lib/invsync --create-home invsync

USER invsync
WORKDIR /var/lib/invsync
EXPOSE 6066
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as u; sys.exit(u.urlopen('http://127.0.0.1:6066/ready', timeout=2).status != 200)"]
CMD ["invsync", "worker"]
