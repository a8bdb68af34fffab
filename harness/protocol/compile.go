package protocol

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// CompileProtos compiles .proto sources at run time (no protoc needed) with
// github.com/bufbuild/protocompile. files are names relative to one of
// importPaths (as an import statement spells them) or paths on disk inside
// one of them; with no import paths, each file's folder is one (and the
// current directory, for names that are not paths on disk).
// Well-known imports (google/protobuf/*.proto) need no path. A syntax or
// type error names the .proto file, line and column.
func CompileProtos(ctx context.Context, importPaths, files []string) (*Descriptors, error) {
	if len(files) == 0 {
		return nil, errors.New(".proto sources: no files given")
	}
	if len(importPaths) == 0 {
		importPaths = defaultImportPaths(files)
	}
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = importName(f, importPaths)
	}
	comp := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{ImportPaths: importPaths}),
	}
	linked, err := comp.Compile(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf(".proto sources (import paths %s): %w", strings.Join(importPaths, ", "), err)
	}
	reg := new(protoregistry.Files)
	for _, f := range linked {
		if err := registerWithImports(reg, f); err != nil {
			return nil, fmt.Errorf(".proto sources: %w", err)
		}
	}
	return newDescriptors(reg, ".proto sources "+strings.Join(names, ", "), nil), nil
}

// defaultImportPaths are the folders of the files that exist on disk, then ".".
func defaultImportPaths(files []string) []string {
	var out []string
	for _, f := range files {
		if _, err := os.Stat(f); err == nil && !contains(out, filepath.Dir(f)) {
			out = append(out, filepath.Dir(f))
		}
	}
	if !contains(out, ".") {
		out = append(out, ".")
	}
	return out
}

// importName turns a path on disk inside an import path into the name
// relative to it; anything else is returned unchanged (already a name).
func importName(file string, importPaths []string) string {
	if _, err := os.Stat(file); err != nil {
		return filepath.ToSlash(file)
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return filepath.ToSlash(file)
	}
	for _, ip := range importPaths {
		root, err := filepath.Abs(ip)
		if err != nil {
			continue
		}
		if rel, err := filepath.Rel(root, abs); err == nil && !strings.HasPrefix(rel, "..") {
			return filepath.ToSlash(rel)
		}
	}
	return filepath.ToSlash(file)
}
