# Makefile: every target needs only Go; tool versions are pinned in tools/go.mod.
GO      ?= go
BIN     := $(CURDIR)/.bin
TOOLS   := $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc

.PHONY: run test proto lint build tools bench

## run: the main job (see README)
run:
	$(GO) run ./cmd/bidikit run

## test: the test command CI runs (.ci/run runs exactly this)
test:
	$(GO) test -race -count=1 -timeout 25m ./...

## build: the bidikit binary in ./bidikit
build:
	$(GO) build -o bidikit ./cmd/bidikit

## tools: build the pinned code generators into .bin/
tools: $(TOOLS)
$(TOOLS): tools/go.mod tools/go.sum
	cd tools && $(GO) build -o $(BIN)/ github.com/bufbuild/buf/cmd/buf google.golang.org/protobuf/cmd/protoc-gen-go google.golang.org/grpc/cmd/protoc-gen-go-grpc

## proto: regenerate the committed Go code from proto/
proto: tools
	cd proto && PATH=$(BIN):$$PATH buf lint && PATH=$(BIN):$$PATH buf generate

## lint: go vet, gofmt and buf lint
lint: tools
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go'))" || (gofmt -l $$(git ls-files -co --exclude-standard '*.go'); exit 1)
	cd proto && PATH=$(BIN):$$PATH buf lint
