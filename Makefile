# cortado: the two commands of the README.
#   make demo   installs missing Debian packages, builds, trains LeNet on Fashion-MNIST
#   make test   installs missing Debian packages, builds, runs the whole suite; then the
#               fuzz targets briefly (check-fuzz) and the suite under ASan + UBSan (check-sanitize)
BUILD   ?= build
JOBS    ?= 2
SUDO    := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
# Debian packages, one per line in .ci/debian-packages (the build, the tests and the tools).
DEBS    := $(shell grep -v '^\#' .ci/debian-packages)

.PHONY: all deps build demo test test-gpu check check-fuzz check-sanitize fuzz-long install clean

all: build

deps:
	@missing=$$(for p in $(DEBS); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "Installing Debian packages:" $$missing; \
	    $(SUDO) apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

# make install [PREFIX=/usr/local]: bin/cortado, lib/libcortado.so, include/cortado.h,
# lib/pkgconfig/cortado.pc, lib/cmake/cortado/, and the Python module under lib/python3.X/dist-packages.
PREFIX  ?= /usr/local
install: build
	cmake --install $(BUILD) --prefix $(PREFIX)
	@if [ -w /etc/ld.so.conf.d ] && [ "$(PREFIX)" = /usr/local ]; then ldconfig; fi

# The demo reads LMDBs made once by `cortado convert` from Debian's dataset-fashion-mnist package.
FMNIST  := /usr/share/datasets/fashion-mnist

demo: build
	@mkdir -p demo-out
	@for s in train t10k; do db=demo-out/fashion_mnist_$$( [ $$s = train ] && echo train || echo test )_lmdb; \
	    [ -d $$db ] || ./$(BUILD)/cortado convert --images=$(FMNIST)/$$s-images-idx3-ubyte.gz \
	        --labels=$(FMNIST)/$$s-labels-idx1-ubyte.gz --db=$$db || exit 1; done
	./$(BUILD)/cortado train --solver=examples/fashion_mnist/lenet_demo_solver.prototxt
	@./$(BUILD)/cortado test --model=examples/fashion_mnist/lenet_train_test.prototxt \
	    --weights=demo-out/lenet_demo_iter_$$(sed -n 's/^max_iter: *\([0-9]*\).*/\1/p' \
	        examples/fashion_mnist/lenet_demo_solver.prototxt).caffemodel --iterations=100 2>&1 \
	    | sed -n 's/.*accuracy = \([0-9.]*\)$$/Fashion-MNIST LeNet test accuracy: \1/p' | tail -1

test: check
	@$(MAKE) --no-print-directory check-fuzz check-sanitize

# The GPU check of the CUDA driver (tests/gpu/run.sh): on a machine with a GPU, builds into
# build-gpu and runs every driver entry and every layer's gradient check on cuda:0 against the
# CPU, LeNet on the GPU and on CPU+GPU against the CPU, and the timings of bench/gpu_bench.sh.
test-gpu:
	bash tests/gpu/run.sh

# The suite in the release build: unit, PyTorch, CLI, bad-input, kill/resume and valgrind tests.
check: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

# libFuzzer targets (fuzz/), clang + ASan + UBSan, FUZZ_SECONDS each on the seed corpus in
# fuzz/corpus/; any crash, leak or sanitizer report fails. `make fuzz-long` runs each 10 minutes.
# Without the CUDA driver: the fuzzers do not reach it, and a library with CUDA objects links
# through the CUDA host compiler (g++), which has no libFuzzer.
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 20
CLANG        ?= clang-14
check-fuzz: deps
	@cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=$(CLANG) -DCMAKE_BUILD_TYPE=Release -DCT_FUZZ=ON -DCT_CUDA=OFF \
	    -DCT_FUZZ_SECONDS=$(FUZZ_SECONDS) >/dev/null
	@cmake --build $(FUZZ_BUILD) -j$(JOBS) --target fuzz_all
	cd $(FUZZ_BUILD) && ctest --output-on-failure -j$(JOBS) -L fuzz

fuzz-long:
	@$(MAKE) --no-print-directory check-fuzz FUZZ_SECONDS=600

# The whole suite built with ASan + UBSan (CT_SANITIZE). Left out: sh_lenet (minutes of LeNet
# training; test_train covers the same code under the sanitizers), sh_mpi_async (trains DOWNPOUR
# and HOGWILD to an accuracy target: over 10 minutes under ASan on 2 cores; sh_mpi_sync, sh_mpi_procs and
# sh_mpi_fail run the MPI code under the sanitizers), sh_valgrind (valgrind cannot run an ASan
# binary) and sh_install (its uninstrumented programs and python3 cannot load an ASan library). The Python tests load the instrumented libct_testkit.so through
# ctypes into an uninstrumented python3, so they run last, with the ASan runtime preloaded and
# leak checking off for the interpreter (its own allocations are not ours to judge). The MPI tests
# run without leak checking too: Open MPI's dlopen'ed components keep allocations past
# MPI_Finalize and are unloaded by then, so LeakSanitizer cannot even name them for a suppression;
# invalid accesses and undefined behaviour still fail them.
SAN_BUILD ?= build-asan
SAN_ENV   := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:check_initialization_order=1 \
             LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
             UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:abort_on_error=1
check-sanitize: deps
	@cmake -S . -B $(SAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCT_SANITIZE=ON >/dev/null
	@cmake --build $(SAN_BUILD) -j$(JOBS)
	cd $(SAN_BUILD) && $(SAN_ENV) ctest --output-on-failure -j$(JOBS) -LE fuzz \
	    -E '^(sh_lenet|sh_valgrind|sh_install|py_.*|sh_mpi_.*)$$'
	cd $(SAN_BUILD) && $(SAN_ENV) ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	    ctest --output-on-failure -j$(JOBS) -R '^sh_mpi_' -E '^sh_mpi_async$$'
	cd $(SAN_BUILD) && LD_PRELOAD=$$($(CC) -print-file-name=libasan.so) \
	    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    ctest --output-on-failure -j$(JOBS) -R '^py_'

clean:
	rm -rf $(BUILD) $(FUZZ_BUILD) $(SAN_BUILD) demo-out
