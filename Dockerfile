# The API and worker image. Configuration comes only from JOURNEYS_* environment variables.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md alembic.ini ./
COPY api ./api
COPY activities ./activities
COPY config ./config
COPY domain ./domain
COPY migrations ./migrations
COPY runtime ./runtime
COPY templates ./templates
COPY workflows ./workflows
RUN pip install .

RUN useradd --system --uid 10001 journeys
USER journeys
EXPOSE 8000
CMD ["journeys", "api"]
