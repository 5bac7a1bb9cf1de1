# The image runs the README's install without the test extras, from a built wheel: the
# package carries its templates, static files, migrations and alembic.ini (setup.py), so
# the final stage holds no source tree, only the installed package.
FROM python:3.11.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md alembic.ini ./
COPY letters ./letters
COPY templates ./templates
COPY static ./static
COPY migrations ./migrations
RUN pip wheel --no-cache-dir --no-deps -w /wheels .

FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    INSTANCE_PATH=/app/instance
WORKDIR /app
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --create-home letters && mkdir -p /app/instance && chown letters /app/instance
USER letters
EXPOSE 8000
# Ready means the app answers and reaches its database (/readyz answers 503 otherwise).
# The slim image has no curl: Python asks.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as u; sys.exit(u.urlopen('http://127.0.0.1:8000/readyz', timeout=4).status != 200)"]
CMD ["letters", "serve", "--host", "0.0.0.0", "--port", "8000"]
