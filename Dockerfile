# One image for every process of the pipeline (stage `runtime`, the default target); the tools
# people run around it get an image of their own (stage `tools`). docker-compose.yml picks the
# module each service runs.
FROM python:3.12-slim AS runtime

# PYTHONFAULTHANDLER: a crash, or a SIGABRT to a process that hangs, writes every thread's stack
# to its log before it dies. Under `init: true` the init does not pass SIGABRT on: send it to
# init's child, `docker compose exec SERVICE sh -c 'kill -ABRT $(cat /proc/1/task/1/children)'`.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONFAULTHANDLER=1 \
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
# The first start's step (compose's `provision` service): the users, passwords and definitions.
COPY provision/ provision/

RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app
USER app

# Overridden per service (`command:` in docker-compose.yml): first, service or last.
CMD ["python", "-m", "service"]


# `python -m tools.watch` and `python -m tools.report` (with matplotlib for its figure), for
# the compose profile `tools`: the runtime plus tools/, never shipped with the pipeline.
FROM runtime AS tools
USER root
COPY requirements-tools.txt ./
RUN pip install --no-cache-dir -r requirements-tools.txt
COPY tools/ tools/
USER app
CMD ["python", "-m", "tools.watch"]


# The default target (`docker build .`): the pipeline's runtime image.
FROM runtime
