package workshop

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/modfile"
)

// ModulePath is bidikit's module path, which student modules require.
const ModulePath = "github.com/bidikit/bidikit"

// FindModuleRoot returns the nearest directory at or above start whose
// go.mod declares ModulePath, or "" when there is none.
func FindModuleRoot(start string) string {
	dir, err := filepath.Abs(start)
	if err != nil {
		return ""
	}
	for range 64 {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && modfile.ModulePath(data) == ModulePath {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
	return ""
}

// InitOptions tune Init.
type InitOptions struct {
	// Root is the bidikit checkout the student module uses through a
	// replace directive ("" = none; the README then says how to add one).
	Root string
	// Bidikit is how the Makefile runs bidikit (default "bidikit").
	Bidikit string
}

// Init writes a starter Go module for ex into dir: the broken server as
// editable code (<package>/server.go), main.go serving it (--addr,
// --admin-addr), go.mod (module example.com/bidikit-exNN), go.sum, a
// Makefile (run, check), the sheets and the suite. dir must not exist or be
// empty; Init never overwrites anything.
func Init(ex Exercise, dir string, o InitOptions) error {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s is not empty: choose a new or empty folder (nothing was written)", dir)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reading %s: %w", dir, err)
	}
	if o.Bidikit == "" {
		o.Bidikit = "bidikit"
	}
	module := fmt.Sprintf("example.com/bidikit-ex%02d", ex.Number)
	gomod, gosum, err := studentGoMod(module, o.Root)
	if err != nil {
		return err
	}
	server, err := fs.ReadFile(ex.Files, "server.go")
	if err != nil {
		return err
	}
	out := map[string][]byte{
		"go.mod":                               gomod,
		filepath.Join(ex.Package, "server.go"): server,
		"main.go":                              []byte(studentMain(ex, module)),
		"Makefile":                             []byte(studentMakefile(ex, o.Bidikit)),
	}
	if gosum != nil {
		out["go.sum"] = gosum
	}
	for _, lang := range []string{"en", "ja"} {
		sheet, err := ex.Sheet(lang)
		if err != nil {
			return err
		}
		name := "README.md"
		if lang == "ja" {
			name = "README.ja.md"
		}
		out[name] = []byte(sheet + studentNotes(ex, lang, o.Root))
	}
	if err := fs.WalkDir(ex.Suite, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(ex.Suite, p)
		out[filepath.Join("suite", p)] = b
		return err
	}); err != nil {
		return err
	}
	for name, data := range out {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// studentGoMod builds go.mod (and go.sum, copied from the checkout) for the
// student module: it requires bidikit and, with a root, everything bidikit
// requires, so that `go build` needs no network.
func studentGoMod(module, root string) (gomod, gosum []byte, err error) {
	f := &modfile.File{}
	if err := f.AddModuleStmt(module); err != nil {
		return nil, nil, err
	}
	if err := f.AddGoStmt("1.26.0"); err != nil {
		return nil, nil, err
	}
	if err := f.AddRequire(ModulePath, "v0.0.0"); err != nil {
		return nil, nil, err
	}
	if root != "" {
		data, err := os.ReadFile(filepath.Join(root, "go.mod"))
		if err != nil {
			return nil, nil, fmt.Errorf("reading bidikit's go.mod: %w", err)
		}
		parent, err := modfile.Parse(filepath.Join(root, "go.mod"), data, nil)
		if err != nil {
			return nil, nil, err
		}
		for _, r := range parent.Require {
			f.AddNewRequire(r.Mod.Path, r.Mod.Version, true)
		}
		if err := f.AddReplace(ModulePath, "", root, ""); err != nil {
			return nil, nil, err
		}
		if gosum, err = os.ReadFile(filepath.Join(root, "go.sum")); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, nil, err
		}
	}
	f.Cleanup()
	gomod, err = f.Format()
	return gomod, gosum, err
}

func studentMain(ex Exercise, module string) string {
	return fmt.Sprintf(`// Command bidikit-ex%02d serves your version of workshop exercise %d
// (%s) on --addr, with gRPC health, reflection and channelz, and an admin
// HTTP server on --admin-addr with /debug/pprof/ (what the leaks check reads).
package main

import (
	"flag"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // /debug/pprof/ on http.DefaultServeMux
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"
	channelzsvc "google.golang.org/grpc/channelz/service"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"%s/%s"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:7070", "gRPC listen address")
	adminAddr := flag.String("admin-addr", "127.0.0.1:7071", "admin HTTP listen address (/debug/pprof/)")
	flag.Parse()

	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		slog.Error("listen", "addr", *addr, "err", err)
		os.Exit(1)
	}
	s := grpc.NewServer()
	stop := %s.Register(s)
	healthpb.RegisterHealthServer(s, health.NewServer())
	reflection.Register(s)
	channelzsvc.RegisterChannelzServiceToServer(s)

	go func() {
		if err := http.ListenAndServe(*adminAddr, nil); err != nil {
			slog.Error("admin HTTP", "addr", *adminAddr, "err", err)
		}
	}()
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
		<-sig
		stop()
		s.Stop()
	}()
	slog.Info("serving", "grpc", lis.Addr().String(), "admin", *adminAddr)
	if err := s.Serve(lis); err != nil {
		slog.Error("serve", "err", err)
		os.Exit(1)
	}
}
`, ex.Number, ex.Number, ex.Title, module, ex.Package, ex.Package)
}

func studentMakefile(ex Exercise, bidikit string) string {
	return fmt.Sprintf(`# Exercise %d: %s
BIDIKIT ?= %s
ADDR ?= 127.0.0.1:7070
ADMIN_ADDR ?= 127.0.0.1:7071

.PHONY: run check build

# run serves your server; leave it running in one terminal.
run:
	go run . --addr $(ADDR) --admin-addr $(ADMIN_ADDR)

# check runs the exercise's suite against the running server (another terminal).
check:
	$(BIDIKIT) workshop check %d --target $(ADDR) --admin-url http://$(ADMIN_ADDR)

build:
	go build ./... && go vet ./...
`, ex.Number, ex.Title, bidikit, ex.Number)
}

func studentNotes(ex Exercise, lang, root string) string {
	var b strings.Builder
	if lang == "ja" {
		fmt.Fprintf(&b, "\n## このフォルダの使い方\n\n壊れたサーバーは `%s/server.go` です。自由に直してください。\n\n", ex.Package)
		b.WriteString("1. 端末 1: `make run`(サーバーを 127.0.0.1:7070 で起動、管理 HTTP は 127.0.0.1:7071)\n")
		b.WriteString("2. 端末 2: `make check`(スイートを実行。赤の間は終了コード 1、緑で 0)\n")
		fmt.Fprintf(&b, "3. 先生向け: `bidikit workshop check %d --reference` でリファレンスサーバーが緑になることを見せられます。\n", ex.Number)
		if root == "" {
			b.WriteString("\nbidikit のチェックアウトが見つからなかったため、go.mod に replace がありません。\n`go mod edit -replace github.com/bidikit/bidikit=/path/to/bidikit` を実行し、`go mod tidy` してください。\n")
		}
		return b.String()
	}
	fmt.Fprintf(&b, "\n## Using this folder\n\nThe broken server is `%s/server.go`: it is yours to change.\n\n", ex.Package)
	b.WriteString("1. Terminal 1: `make run` (serves on 127.0.0.1:7070, admin HTTP on 127.0.0.1:7071).\n")
	b.WriteString("2. Terminal 2: `make check` (runs the suite; exit status 1 while red, 0 when green).\n")
	fmt.Fprintf(&b, "3. Teachers: `bidikit workshop check %d --reference` shows the reference server passing the same suite.\n", ex.Number)
	if root == "" {
		b.WriteString("\nNo bidikit checkout was found, so go.mod has no replace directive. Run\n`go mod edit -replace github.com/bidikit/bidikit=/path/to/your/bidikit/checkout` and then `go mod tidy`.\n")
	}
	return b.String()
}
