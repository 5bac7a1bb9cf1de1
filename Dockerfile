FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
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
CMD ["letters", "serve", "--host", "0.0.0.0", "--port", "8000"]
