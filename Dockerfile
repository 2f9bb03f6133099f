# l7lb on Debian 12. The image is made by scripts/setup itself, so it has
# exactly what a fresh machine gets (tests/test_packaging.py checks there is no
# second list of packages here). Non-root by default; the kernel features
# (BPF congestion control, the sockmap relay) need root and two capabilities:
#   docker run --user root --cap-add BPF --cap-add NET_ADMIN ...
FROM debian:12
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sudo \
    && useradd --system --home /opt/l7lb l7lb && mkdir -p /run/l7lb && chown l7lb /run/l7lb
COPY . /opt/l7lb
WORKDIR /opt/l7lb
RUN scripts/setup && chown -R l7lb /opt/l7lb && rm -rf /var/lib/apt/lists/*
USER l7lb
EXPOSE 8080
CMD [".venv/bin/lbctl", "run", "-c", "/etc/l7lb/config.yaml"]
