# The Dagster+ Hybrid code server of the `retail_assets` location (dagster_cloud.yaml).
#
# It installs the wheel CI built and uploaded for the Databricks clusters — the same file, so the
# code server's version (`retail_assets.lib.version.code_version`) is the version of the wheel the
# clusters install — with the `code-server` extra (dagster-cloud, which the agent serves the
# location with) and without the `local` extra: no Spark, Delta or UI beyond what the wheel
# requires. Build it after `pip wheel --no-deps -w dist .`; the context holds dist/ and nothing
# else (.dockerignore).
#
# The Python minor of the Databricks Runtime the steps run on (the pickled steps travel between
# the two); it must be within the project's requires-python.
ARG PYTHON_VERSION=3.12
FROM python:${PYTHON_VERSION}-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RETAIL_ENV=databricks

COPY dist/ /tmp/dist/
# Exactly one wheel of the project, installed with its required dependencies only.
RUN set -eu; \
    set -- /tmp/dist/retail_assets-*-py3-none-any.whl; \
    if [ "$#" -ne 1 ] || [ ! -f "$1" ]; then echo "dist/ must hold exactly one retail_assets wheel, found: $*" >&2; exit 1; fi; \
    pip install "$1[code-server]"; \
    rm -rf /tmp/dist; \
    python -c "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in ('deltalake', 'dagster_webserver', 'delta')))"

WORKDIR /opt/dagster/app
