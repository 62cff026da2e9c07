# The README's commands.  The build itself is Meson + Ninja in build/.
PREFIX ?= /usr/local
BUILD ?= build
MESON_OPTS ?=

.PHONY: all deps build check demo bench fuzz soak install clean

all: build

deps:
	@scripts/deps.sh check

$(BUILD)/build.ninja:
	@scripts/deps.sh build
	meson setup $(BUILD) --prefix=$(PREFIX) -Dwerror=$(if $(CI),true,false) $(MESON_OPTS)

build: $(BUILD)/build.ninja
	ninja -C $(BUILD)

check: deps build
	@scripts/check.sh $(BUILD)

demo: deps build
	@scripts/demo.sh $(BUILD)

bench: build
	@scripts/deps.sh bench
	$(BUILD)/src/cli/libretto bench $(BENCH_ARGS)

# Longer fuzzing runs than make check's: FUZZ_SECONDS per harness.
FUZZ_SECONDS ?= 300
fuzz: build
	@for h in kv classify validate fsdreq; do LIBRETTO_SRC=$(CURDIR) LIBRETTO_BUILD=$(CURDIR)/$(BUILD) tests/fuzz/run.sh $$h $(FUZZ_SECONDS) || exit 1; done

# Long runs of the recovery (and later switching) tests: scripts/soak.sh.
soak: deps build
	@scripts/soak.sh $(BUILD)

install: build
	meson install -C $(BUILD)

clean:
	rm -rf $(BUILD)
