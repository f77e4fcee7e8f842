# One image for every process of the pipeline; docker-compose.yml picks the module to run.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so that a code change does not re-install them.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

# The code only, owned by root and read-only to the user the processes run as.
COPY common/ common/
COPY first/ first/
COPY service/ service/
COPY last/ last/

RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app
USER app

# Overridden per service (`command:` in docker-compose.yml): first, service or last.
CMD ["python", "-m", "service"]
