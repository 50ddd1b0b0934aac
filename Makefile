# Set-up and checks. Every target creates .venv and installs the package when needed (idempotent).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST := $(PY) -m pytest

.PHONY: install system-data system-speech data demo test test-slow bench clean

$(STAMP): pyproject.toml requirements-nodeps.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test,tensorboard]"
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	@touch $(STAMP)

install: $(STAMP)

## system-data: the Debian packages that hold real datasets (Fashion-MNIST, the KJV text, fortunes); needs root
DEBIAN_DATA ?= dataset-fashion-mnist bible-kjv bible-kjv-text fortunes fortunes-min
system-data:
	@missing=$$(for p in $(DEBIAN_DATA); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then echo "system data packages present"; \
	elif [ "$$(id -u)" = 0 ]; then apt-get install -y -q $$missing || (apt-get update -q && apt-get install -y -q $$missing); \
	else echo "as root: apt-get install $$missing" >&2; exit 1; fi

## system-speech: the speech synthesizers and sox that build speech-keywords, and pocketsphinx; needs root.
## The recorded speakers of MBROLA, Pico, RHVoice and festival's contrib voices need Debian's contrib and non-free
## components: tools/system-speech.sh adds them to the apt sources (it says which file it changes).
SPEECH_PACKAGES ?= espeak-ng flite festival festlex-cmu festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts sox libsox-fmt-all pocketsphinx pocketsphinx-en-us
MBROLA_VOICES ?= us1 us2 us3 en1 af1 de1 de2 de3 de4 de5 de6 fr1 fr4 gr2 hu1 nl2 pl1 ro1 sw1 sw2
SPEECH_PACKAGES_NONFREE ?= mbrola $(addprefix mbrola-,$(MBROLA_VOICES)) festvox-rablpc16k festvox-don festvox-us1 festvox-us2 festvox-us3 festvox-en1 libttspico-utils rhvoice rhvoice-english
system-speech:
	@sh tools/system-speech.sh $(SPEECH_PACKAGES) -- $(SPEECH_PACKAGES_NONFREE)

## data: build the text datasets the sequence labs read (KJV; EN->ZH pairs from Debian catalogs, ~165 MB of .debs)
data: install system-data
	$(VENV)/bin/deepnotes data build kjv
	$(VENV)/bin/deepnotes data build ui-translations

## demo: train the default lab on the embedded digits and print where the report is (about 1 minute on 2 cores)
demo: install
	$(VENV)/bin/deepnotes run image-classification

## test: the unit and end-to-end tests (about 8 minutes on 2 cores)
test: install
	$(PYTEST) -q -m "not slow"

## test-slow: accuracy targets and other long checks (12 min 36 s on 2 cores)
test-slow: install
	$(PYTEST) -q -m slow

## bench: training throughput and time-to-accuracy (see benchmarks/RESULTS.md)
bench: install
	$(PY) benchmarks/image_classification.py

## clean: remove the virtual environment and pytest's cache
clean:
	rm -rf $(VENV) .pytest_cache
