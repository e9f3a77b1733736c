# genbatch worker / scheduler / simulator image. Runs as a non-root user.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY genbatch ./genbatch
RUN pip install . \
 && useradd --create-home --uid 10001 genbatch \
 && mkdir -p /data && chown genbatch /data
USER genbatch
WORKDIR /data
ENTRYPOINT ["genbatch"]
CMD ["--help"]
