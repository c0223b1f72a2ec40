# cortado: the two commands of the README.
#   make demo   installs missing Debian packages, builds, trains LeNet on Fashion-MNIST
#   make test   installs missing Debian packages, builds, runs the whole suite
BUILD   ?= build
JOBS    ?= 2
SUDO    := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
# Debian packages, one per line in .ci/debian-packages (the build, the tests and the tools).
DEBS    := $(shell grep -v '^\#' .ci/debian-packages)

.PHONY: all deps build demo test clean

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

demo: build
	./$(BUILD)/cortado train --solver=examples/fashion_mnist/lenet_demo_solver.prototxt
	@./$(BUILD)/cortado test --model=examples/fashion_mnist/lenet_train_test.prototxt \
	    --weights=demo-out/lenet_demo_iter_$$(sed -n 's/^max_iter: *\([0-9]*\).*/\1/p' \
	        examples/fashion_mnist/lenet_demo_solver.prototxt).caffemodel --iterations=100 2>&1 \
	    | sed -n 's/.*accuracy = \([0-9.]*\)$$/Fashion-MNIST LeNet test accuracy: \1/p' | tail -1

test: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

clean:
	rm -rf $(BUILD) demo-out
