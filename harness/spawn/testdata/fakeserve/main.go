// Command fakeserve mimics `bidikit serve`'s command line and start-up line
// so package spawn's lifecycle tests do not depend on the real server. Its
// --mode picks a misbehaviour.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "serve" {
		fmt.Fprintln(os.Stderr, "usage: fakeserve serve [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "")
	admin := fs.String("admin-addr", "127.0.0.1:0", "")
	db := fs.String("db", "", "")
	mode := fs.String("mode", "ok", "ok | exit | ignore-term | no-ready | crash-after")
	pidfile := fs.String("pidfile", "", "")
	_ = fs.Parse(os.Args[2:])

	if *pidfile != "" {
		_ = os.WriteFile(*pidfile, []byte(strconv.Itoa(os.Getpid())), 0o600)
	}
	switch *mode {
	case "exit":
		fmt.Fprintln(os.Stderr, "boom: bad config")
		os.Exit(3)
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
	case "no-ready":
		fmt.Println("starting up slowly")
		time.Sleep(time.Hour)
	}
	term := make(chan os.Signal, 1)
	if *mode == "ignore-term" {
		signal.Notify(term, syscall.SIGINT)
	} else {
		signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakeserve:", err)
		os.Exit(1)
	}
	aln, err := net.Listen("tcp", *admin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fakeserve:", err)
		os.Exit(1)
	}
	storage := "memory"
	if *db != "" {
		storage = "sqlite:" + *db
	}
	fmt.Fprintf(os.Stderr, "bidikit serve: listening grpc=%s admin=%s storage=%s\n", ln.Addr(), aln.Addr(), storage)
	for _, l := range []net.Listener{ln, aln} {
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() { defer c.Close(); _, _ = c.Read(make([]byte, 1)) }()
			}
		}()
	}
	if *mode == "crash-after" {
		time.Sleep(200 * time.Millisecond)
		fmt.Fprintln(os.Stderr, "panic: oops")
		os.Exit(2)
	}
	<-term
	fmt.Fprintln(os.Stderr, "fakeserve: stopping")
}
