# The driftline app image: every service of docker-compose.yml runs it
# (`driftline ingest|process|learn|serve|topics …`).
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    DRIFTLINE_HOME=/var/lib/driftline
WORKDIR /app

COPY pyproject.toml setup.py README.md ./
COPY contracts ./contracts
COPY ingest ./ingest
COPY processors ./processors
COPY models ./models
COPY driftline ./driftline
COPY deploy ./deploy
# gcc builds the compiled loops (models/*.pyx: the tree's vote and splitter update, the scaler) and
# leaves with the build.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
 && pip install . \
 && apt-get purge -y --auto-remove gcc libc6-dev && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /var/lib/driftline --create-home driftline \
 && chown -R driftline /var/lib/driftline

USER driftline
EXPOSE 8000 9101 9102 9103
ENTRYPOINT ["driftline"]
CMD ["--help"]
