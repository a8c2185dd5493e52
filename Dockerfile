# Hugging Face Docker Space (sdk: docker, app_port: 8501). Same install step as the README.
FROM python:3.11-slim

RUN useradd --create-home --uid 1000 user
WORKDIR /home/user/app

COPY --chown=user requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY --chown=user app.py ./
COPY --chown=user pages ./pages
COPY --chown=user core ./core
COPY --chown=user weights ./weights
COPY --chown=user assets ./assets
COPY --chown=user .streamlit ./.streamlit

USER user
# TensorFlow runtime: the same values as core/runtime.py (oneDNN off: no heap corruption on AVX-512 CPUs).
ENV HOME=/home/user PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 TF_ENABLE_ONEDNN_OPTS=0
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://localhost:8501/_stcore/health', timeout=4)"
CMD ["streamlit", "run", "app.py", "--server.port=8501", "--server.address=0.0.0.0"]
