# Set-up and everyday commands. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch builds that lie on these machines' disk; override for another machine,
# e.g. `make install TORCH="torch torchaudio"`.
TORCH ?= torch==2.14.1 torchaudio==2.11.0

.PHONY: install demo test test-fast test-slurm bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch, torchaudio" 2>/dev/null || $(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev,subword,lm,hf,tensorboard,onnx]'
	touch $@

demo: install
	$(BIN)/speechrecipe run asv --target-dir exp/asv
	@echo
	@cat exp/asv/results/README.md

test: install
	$(BIN)/python -m pytest

# The unit tests without end-to-end recipe runs (marker e2e, see tests/conftest.py): under a minute.
test-fast: install
	$(BIN)/python -m pytest -m "not e2e"

# recipes/slurm/ against a real single-node Slurm started by the test (root, slurm-wlm and munge: .ci/run installs them).
test-slurm: install
	$(BIN)/python -m pytest tests/test_slurm.py

# Benchmarks behind bench/RESULTS.md (about 20 minutes on 2 cores; run on a quiet machine).
bench: install
	$(BIN)/python bench/bench_cli.py
	$(BIN)/python bench/bench_asv.py
	$(BIN)/python bench/bench_scoring.py
	$(BIN)/python bench/bench_resume.py
	$(BIN)/python bench/bench_prepare.py
	$(BIN)/python bench/bench_corpus_check.py
	$(BIN)/python bench/bench_asr.py
	$(BIN)/python bench/bench_ks.py
	$(BIN)/python bench/bench_diarization.py
	$(BIN)/python bench/bench_torchrun.py --problem asv
	$(BIN)/python bench/bench_torchrun.py --problem ks

clean:
	rm -rf exp build *.egg-info
