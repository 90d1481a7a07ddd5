# The dockyard development image: managerd and apid built from this checkout.
# Used by docker-compose.dev.yml (one image, one service per daemon):
#   docker compose -f docker-compose.dev.yml up --build
FROM debian:bookworm-slim

# install.sh's apt step wants these before it can run; the rest it installs itself
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/dockyard
COPY pyproject.toml setup.py README.md ./
COPY src/ src/
COPY apid/ apid/
COPY managerd/ managerd/
COPY shim/ shim/
COPY protos/ protos/
COPY client/ client/
COPY bin/ bin/
COPY scripts/ scripts/
RUN scripts/install.sh && rm -rf /var/lib/apt/lists/* /root/.cache

# dockyard-shim (the runtime managerd calls) and the CLI on PATH
ENV PATH=/opt/dockyard/.venv/bin:$PATH
VOLUME ["/var/lib/dockyard", "/run/dockyard"]
CMD ["dockyard-managerd"]
