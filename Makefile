# edgeeas: `make install` then `make test`. Everything lands in .venv; apt packages need root.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export ORT_DISABLE_TELEMETRY := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: install apt test test-quick pretrain bench clean

install: apt $(BIN)/edgeeas data

# System packages the tests use: Debian's real adb client (drives our device-side peer), libusb,
# iproute2 (a peer in a network namespace whose link is cut: a device going offline).
apt:
	@if ! command -v adb >/dev/null 2>&1 || ! command -v ip >/dev/null 2>&1 || ! ldconfig -p | grep -q libusb-1.0; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq adb libusb-1.0-0 iproute2; \
	  else echo "edgeeas: please install the Debian packages 'adb', 'libusb-1.0-0' and 'iproute2' (needs root)" >&2; exit 1; fi; \
	fi

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(BIN)/edgeeas: $(VENV)/bin/python requirements.txt constraints.txt setup.cfg
	$(BIN)/pip install -q -c constraints.txt -r requirements.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	@touch $@

# ./data -> ../shared/data when that exists (the CIFAR-100 archive); EDGEEAS_DATA or --data override it.
data:
	@if [ ! -e data ] && [ -d ../shared/data ]; then ln -s ../shared/data data; fi

# The whole suite, slow tests included.
test: install
	$(BIN)/python -m pytest -q
	@$(MAKE) --no-print-directory test-arm64-if-possible

# The quick loop: every test not marked slow.
test-quick: install
	$(BIN)/python -m pytest -q -m "not slow"

# The 40-epoch supernet run (runs/e40; `make promote-supernet` copies it to runs/default, the shipped
# supernet, then retrain the generators: `make generators`): ~6.5 min an
# epoch on 1 thread of this 2-core machine (benchmarks/results/supernet.json, throughput); resumes
# from the committed runs/e40/last.pt, also on a fresh clone. Epoch 30 is kept (epoch30.pt) as the
# fork point of the superclass-dropout ablation (PRETRAIN_FORK).
PRETRAIN_ARGS := --out runs/e40 --epochs 40 --batch-size 128 --lr 0.1 --weight-decay 3e-4 \
	--superclass-dropout 0 --num-random 1 --seed 0 --threads 1 --keep-epochs 30
PRETRAIN_FORK := --out runs/e40-sd05 --epochs 40 --batch-size 128 --lr 0.1 --weight-decay 3e-4 \
	--superclass-dropout 0.5 --num-random 1 --seed 0 --threads 1 --init-from runs/e40/epoch30.pt
pretrain: install
	OMP_NUM_THREADS=1 $(BIN)/edgeeas train supernet --data $(or $(EDGEEAS_DATA),data) $(PRETRAIN_ARGS) \
	  $(if $(wildcard runs/e40/last.pt),--resume)
pretrain-ablation: install
	OMP_NUM_THREADS=1 $(BIN)/edgeeas train supernet --data $(or $(EDGEEAS_DATA),data) $(PRETRAIN_FORK) \
	  $(if $(wildcard runs/e40-sd05/last.pt),--resume)
.PHONY: pretrain-ablation
promote-supernet:
	@test -f runs/e40/supernet.pt || { echo "no runs/e40/supernet.pt: run make pretrain first" >&2; exit 2; }
	cp runs/e40/supernet.pt runs/e40/summary.csv runs/e40/steps.jsonl runs/e40/args.yaml runs/default/
# The shipped generators of runs/default (latency on the host table, and MAdds); the accuracy
# predictor's data (200 subnets x 20 superclasses, ~20 min one time) is cached in runs/default.
generators: install
	OMP_NUM_THREADS=1 $(BIN)/edgeeas train generator --supernet runs/default --target host --threads 1 --overwrite
	OMP_NUM_THREADS=1 $(BIN)/edgeeas train generator --supernet runs/default --madds --threads 1 --overwrite
.PHONY: promote-supernet generators

clean:
	rm -rf $(VENV) *.egg-info

# Regression check of farm.yaml's devices x models against baseline.json (reports in regress-out/).
# Record the baseline once with REGRESS_ARGS=--update-baseline.
REGRESS_ARGS ?=
regress:
	@if [ ! -f farm.yaml ]; then echo "edgeeas regress: no farm.yaml here: copy farm.example.yaml to farm.yaml and list your devices and models (docs/regress.md)" >&2; exit 2; fi
	@if [ ! -f baseline.json ] && [ -z "$(findstring --update-baseline,$(REGRESS_ARGS))" ]; then echo "edgeeas regress: no baseline.json: record one with 'make regress REGRESS_ARGS=--update-baseline' (docs/regress.md)" >&2; exit 2; fi
	$(BIN)/edgeeas regress --farm farm.yaml --baseline baseline.json --out regress-out $(REGRESS_ARGS)
.PHONY: regress

# Specialize + validate every scenario of deploy.yaml, then push the passing models (host: ./deploy/).
DEPLOY_ARGS ?=
deploy: install
	@if [ ! -f deploy.yaml ]; then echo "edgeeas deploy: no deploy.yaml here: copy deploy.example.yaml to deploy.yaml and list your target and scenarios" >&2; exit 2; fi
	$(BIN)/edgeeas deploy --config deploy.yaml $(DEPLOY_ARGS)
.PHONY: deploy

# Mutation testing of the core modules (cosmic-ray, each module with its own fast tests), not part
# of `make test`: writes benchmarks/results/mutation.json.  MODULES=evaluate,parse runs a subset;
# SAMPLE=N mutants per module (seeded random sample; SAMPLE=0: every mutant, hours on this machine).
MODULES ?= evaluate,parse,space,cost,fit,predictor,data,train
SAMPLE ?= 24
mutate: install
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/bench_mutation.py --modules $(MODULES) --sample $(SAMPLE)
.PHONY: mutate

# The emulated ARM64 device (testing/arm64, issue 16): an arm64 Debian rootfs run under qemu-user,
# with Debian's arm64 Python and the aarch64 ai-edge-litert wheel, built once (root; about 2-5 min,
# network to the Debian mirror and PyPI) into ~/.cache/edgeeas/arm64-rootfs ($EDGEEAS_ARM64_ROOTFS)
# and reused after that.  Its tests carry the marker arm64 (EDGEEAS_ARM64=1): `make test-arm64`
# builds the device if needed, then runs them (about 1-2 min).  `make test` ends with them when the
# device can be built here; where it cannot (no root, no binfmt_misc, no mirror) it prints
# "arm64 device tests SKIPPED: <why>" and the suite's result stands; once built, their failures fail.
arm-device: install
	testing/arm64/make_rootfs.sh
ARM64_TESTS = EDGEEAS_ARM64=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -m arm64 tests/test_arm64.py
test-arm64: arm-device
	$(ARM64_TESTS)
test-arm64-if-possible: install
	@log="$$(mktemp)"; \
	if testing/arm64/make_rootfs.sh >"$$log" 2>&1; then tail -2 "$$log"; rm -f "$$log"; \
	  $(ARM64_TESTS); \
	else echo "make test: arm64 device tests SKIPPED: the set-up failed: $$(grep 'arm-device:' "$$log" | tail -1 || tail -1 "$$log")"; \
	  tail -20 "$$log"; rm -f "$$log"; fi
.PHONY: arm-device test-arm64 test-arm64-if-possible
