# The image runs the README's install without the test extras. The project is installed in
# place (-e): templates, static files and migrations live beside the package, in /app.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY letters ./letters
COPY templates ./templates
COPY static ./static
COPY migrations ./migrations
RUN pip install --no-cache-dir -e . \
    && useradd --create-home letters && mkdir -p /app/instance && chown letters /app/instance
USER letters
EXPOSE 8000
# Ready means the app answers and reaches its database (/readyz answers 503 otherwise).
# The slim image has no curl: Python asks.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as u; sys.exit(u.urlopen('http://127.0.0.1:8000/readyz', timeout=4).status != 200)"]
CMD ["letters", "serve", "--host", "0.0.0.0", "--port", "8000"]
