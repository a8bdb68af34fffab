// Package proto_test checks that the committed generated code matches the
// .proto sources when regenerated with the tools pinned in tools/go.mod.
package proto_test

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedCodeIsFresh builds the pinned generators, regenerates every
// .proto into a scratch copy of this folder and compares each generated file
// with the committed one. It fails on any difference and on any generated file
// that is missing or not committed.
func TestGeneratedCodeIsFresh(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("the go command is needed to build the pinned generators: %v", err)
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+string(os.PathSeparator),
		"github.com/bufbuild/buf/cmd/buf",
		"google.golang.org/protobuf/cmd/protoc-gen-go",
		"google.golang.org/grpc/cmd/protoc-gen-go-grpc")
	build.Dir = filepath.Join("..", "tools")
	build.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building pinned generators from tools/go.mod: %v\n%s", err, out)
	}

	scratch := t.TempDir()
	committed := map[string][]byte{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.HasSuffix(path, ".pb.go") {
			committed[path] = data
			return nil
		}
		if strings.HasSuffix(path, ".proto") || strings.HasPrefix(filepath.Base(path), "buf.") {
			dst := filepath.Join(scratch, path)
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			return os.WriteFile(dst, data, 0o644)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	gen := exec.Command(filepath.Join(bin, "buf"), "generate")
	gen.Dir = scratch
	gen.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("buf generate: %v\n%s", err, out)
	}

	fresh := map[string][]byte{}
	_ = filepath.WalkDir(scratch, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".pb.go") {
			rel, _ := filepath.Rel(scratch, path)
			fresh[rel], _ = os.ReadFile(path)
		}
		return nil
	})
	if len(fresh) == 0 {
		t.Fatal("buf generate produced no .pb.go files")
	}
	for path, want := range fresh {
		got, ok := committed[path]
		switch {
		case !ok:
			t.Errorf("%s is generated but not committed: run `make proto`", path)
		case !bytes.Equal(got, want):
			t.Errorf("%s is stale: run `make proto` and commit the result", path)
		}
	}
	for path := range committed {
		if _, ok := fresh[path]; !ok {
			t.Errorf("%s is committed but no .proto generates it: delete it or run `make proto`", path)
		}
	}
}
