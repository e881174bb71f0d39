FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DJANGO_SETTINGS_MODULE=inventory_site.settings.production
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends libpq5 && rm -rf /var/lib/apt/lists/*
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
# Static files are collected at build time (served by whitenoise); the settings need placeholders only.
RUN SECRET_KEY=build DATABASE_URL=postgres://build@localhost/build REDIS_URL=redis://localhost:6379/0 \
    python manage.py collectstatic --noinput
# Never root: the code and static files belong to root and are read-only to the app's own user.
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin stockroom
USER stockroom
EXPOSE 8000
# The web server's /healthz, asked as the site's own host (ALLOWED_HOSTS); workers and beat turn it off.
HEALTHCHECK --interval=15s --timeout=6s --start-period=30s --retries=3 CMD ["python", "-m", "inventory_site.healthcheck"]
# ASGI: open availability streams wait on the event loop, every other request runs as under WSGI (docs/stream.md).
CMD ["gunicorn", "inventory_site.asgi:application", "--worker-class", "uvicorn_worker.UvicornWorker", "--bind", "0.0.0.0:8000", "--workers", "4"]
