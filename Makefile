# tingbao: two commands on a fresh Debian/Ubuntu machine (see README.md).
#   make demo   the main job
#   make test   the tests (what CI runs through .ci/run)
# Each installs what is missing first: Debian packages with apt when run as root,
# and a .venv holding the project.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Servers and system libraries the project starts or loads itself (no systemd needed):
# mosquitto + influxdb (the local stack), libportaudio2 (sounddevice), and a private
# PulseAudio server with sox so the live-input path is tested with real audio, not a mock;
# Noto CJK fonts and Pango for the PDF reports (WeasyPrint), poppler-utils to check them;
# Chromium and its driver for the live page's browser tests (Selenium, headless).
APT_PACKAGES := mosquitto mosquitto-clients influxdb libportaudio2 libsndfile1 \
                pulseaudio pulseaudio-utils libasound2-plugins sox \
                fonts-noto-cjk poppler-utils libpango-1.0-0 libpangoft2-1.0-0 \
                chromium chromium-driver

.PHONY: demo test lint bench system venv clean

demo: venv system
	$(BIN)/tingbao demo

# Two pytest workers (pytest-xdist), one test file at a time each: most long tests wait on
# real time (outages, real-time agents), so two of them overlap on two cores; every worker
# starts its own servers on free ports.
test: venv system
	$(BIN)/ruff check edge collector analysis dashboards tests bench
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# The peer (acoustic-toolbox) pins the old `pysoundfile`, which overwrites `soundfile`,
# so it gets a venv of its own; bench/edge_core.py runs it in a child process.
PEER := bench/.peer-venv
bench: venv $(PEER)/.installed
	$(BIN)/python bench/edge_core.py

$(PEER)/.installed:
	$(PYTHON) -m venv $(PEER)
	$(PEER)/bin/python -m pip install -q acoustic-toolbox==0.2.2
	touch $@

system:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages:$$missing — run: sudo apt-get install -y$$missing"; \
	  fi; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml dashboards/live/vendor.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[edge,server,dev]'
	$(BIN)/python dashboards/live/vendor.py   # ECharts from the npm registry, pinned
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info
