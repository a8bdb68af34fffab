package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/reflection"

	"github.com/bidikit/bidikit/bench"
	"github.com/bidikit/bidikit/reference"
)

// selfSigned is a fresh certificate for 127.0.0.1.
func selfSigned() tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bidikit-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	Expect(err).NotTo(HaveOccurred())
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// startTestService serves grpc-go's interop TestService with health and
// reflection on a free loopback port, with TLS when cert is given.
func startTestService(cert *tls.Certificate) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	var opts []grpc.ServerOption
	if cert != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12})))
	}
	s := grpc.NewServer(opts...)
	testgrpc.RegisterTestServiceServer(s, interop.NewTestServer())
	healthpb.RegisterHealthServer(s, health.NewServer())
	reflection.Register(s)
	go func() { _ = s.Serve(lis) }()
	DeferCleanup(s.Stop)
	return lis.Addr().String()
}

var _ = Describe("one command line for run, bench and workshop", func() {
	var dir string
	BeforeEach(func() {
		dir = GinkgoT().TempDir()
		Expect(os.WriteFile(filepath.Join(dir, "tiny.yaml"), []byte(tinyScenario), 0o644)).To(Succeed())
	})

	It("--version names the module, its revision and Go", func(ctx SpecContext) {
		code, stdout, stderr := runBidikit(ctx, dir, "--version")
		Expect(code).To(Equal(0), stderr)
		Expect(stdout).To(HavePrefix("bidikit github.com/bidikit/bidikit "))
		Expect(stdout).To(MatchRegexp(`revision (unknown|[0-9a-f]{40})`))
		Expect(stdout).To(ContainSubstring(", go1."))
	}, SpecTimeout(time.Minute))

	DescribeTable("unknown commands and flags exit 2 with the nearest one",
		func(ctx SpecContext, args []string, msgs ...string) {
			code, stdout, stderr := runBidikit(ctx, dir, args...)
			Expect(code).To(Equal(2), "stdout: %s\nstderr: %s", stdout, stderr)
			for _, m := range msgs {
				Expect(stderr).To(ContainSubstring(m))
			}
		},
		Entry("a subcommand", []string{"runn"}, `unknown command "runn" for "bidikit"`, "Did you mean this?\n\trun", SpecTimeout(time.Minute)),
		Entry("a report subcommand", []string{"report", "nosuch"}, `unknown command "nosuch" for "bidikit report"`, "Commands: merge", SpecTimeout(time.Minute)),
		Entry("a workshop subcommand", []string{"workshop", "lst"}, `unknown command "lst" for "bidikit workshop"`, "Did you mean this?\n\tlist", SpecTimeout(time.Minute)),
		Entry("a flag", []string{"run", "--seeed", "3"}, "unknown flag: --seeed", "Did you mean this?\n\t--seed", SpecTimeout(time.Minute)),
		Entry("a bench workload", []string{"bench", "comapre"}, `unknown workload "comapre"`, `did you mean "compare"?`, SpecTimeout(time.Minute)),
		Entry("--insecure with a --tls flag", []string{"run", "--insecure", "--tls-skip-verify"}, "--insecure (plaintext) and the --tls* flags exclude each other", SpecTimeout(time.Minute)),
		Entry("ghz's --cacert with --insecure on bench", []string{"bench", "--call", "a.B/C", "--target", "127.0.0.1:1", "--insecure", "--cacert", "nope.pem"}, "--insecure (plaintext) and the --tls* flags exclude each other", SpecTimeout(time.Minute)),
		Entry("--spawn-server self, the old string form", []string{"bench", "conn-ramp", "--spawn-server", "self"}, `--spawn-server is a switch now`, SpecTimeout(time.Minute)),
		Entry("--tls on a bench workload", []string{"bench", "chat-echo", "--tls"}, "--tls*, --token and ghz's TLS flags apply to --call", SpecTimeout(time.Minute)),
		Entry("--tls on workshop check without --target", []string{"workshop", "check", "1", "--tls"}, "are for --target", SpecTimeout(time.Minute)),
	)

	Describe("a TLS/plaintext mismatch is named, with the flag to change", func() {
		It("TLS to the plaintext reference server (run), and ghz's --skipTLS to a plaintext server (bench)", func(ctx SpecContext) {
			sctx, cancel := context.WithCancel(context.Background())
			srv, err := reference.StartDefault(sctx, slog.New(slog.DiscardHandler))
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(func() { cancel(); _ = srv.Wait() })

			code, stdout, stderr := runBidikit(ctx, dir, "run", "tiny.yaml", "--target", srv.Addr(), "--tls-skip-verify", "--dial-timeout", "1s")
			Expect(code).To(Equal(1), "stdout: %s\nstderr: %s", stdout, stderr)
			Expect(stderr).To(ContainSubstring("the target speaks plaintext gRPC but bidikit dialed it with TLS"))
			Expect(stderr).To(ContainSubstring("--insecure"))

			plain := startTestService(nil)
			code, stdout, stderr = runBidikit(ctx, dir, "bench", "--call", "grpc.testing.TestService/FullDuplexCall", "--target", plain, "--skipTLS", "--dial-timeout", "1s")
			Expect(code).To(Equal(1), "stdout: %s\nstderr: %s", stdout, stderr)
			Expect(stderr).To(ContainSubstring("the target speaks plaintext gRPC but bidikit dialed it with TLS"))
		}, SpecTimeout(time.Minute))

		It("plaintext (the default) to a TLS server, in run and bench", func(ctx SpecContext) {
			cert := selfSigned()
			addr := startTestService(&cert)
			code, stdout, stderr := runBidikit(ctx, dir, "run", "tiny.yaml", "--target", addr, "--dial-timeout", "1s")
			Expect(code).To(Equal(1), "stdout: %s\nstderr: %s", stdout, stderr)
			Expect(stderr).To(ContainSubstring("the target expects TLS but bidikit dialed it in plaintext (the default)"))
			Expect(stderr).To(ContainSubstring("--tls-ca FILE"))

			code, stdout, stderr = runBidikit(ctx, dir, "bench", "--call", "grpc.testing.TestService/FullDuplexCall", "--target", addr, "--dial-timeout", "1s")
			Expect(code).To(Equal(1), "stdout: %s\nstderr: %s", stdout, stderr)
			Expect(stderr).To(ContainSubstring("the target expects TLS but bidikit dialed it in plaintext"))
		}, SpecTimeout(time.Minute))
	})

	It("bench --call names a missing method's service's methods, and a missing service's services, from reflection", func(ctx SpecContext) {
		addr := startTestService(nil)
		code, stdout, stderr := runBidikit(ctx, dir, "bench", "--call", "grpc.testing.TestService/FullDupleksCall", "--target", addr, "--dial-timeout", "2s")
		Expect(code).To(Equal(2), "stdout: %s\nstderr: %s", stdout, stderr)
		Expect(stderr).To(ContainSubstring(`service grpc.testing.TestService has no method "FullDupleksCall" (did you mean "FullDuplexCall"?)`))
		Expect(stderr).To(ContainSubstring("FullDuplexCall (bidi streaming)"))
		Expect(stderr).To(ContainSubstring("EmptyCall (unary)"))
		Expect(stderr).To(ContainSubstring("by reflection on " + addr))

		code, stdout, stderr = runBidikit(ctx, dir, "bench", "--call", "grpc.testing.NoService/Call", "--target", addr, "--dial-timeout", "2s")
		Expect(code).To(Equal(2), "stdout: %s\nstderr: %s", stdout, stderr)
		Expect(stderr).To(ContainSubstring(`no service "grpc.testing.NoService"`))
		Expect(stderr).To(ContainSubstring("grpc.testing.TestService"))
		Expect(stderr).To(ContainSubstring("grpc.health.v1.Health"))
	}, SpecTimeout(time.Minute))

	It("bench compare judges 3 runs against 3 with a test, and cannot judge from fewer", func(ctx SpecContext) {
		write := func(name string, mps float64) string {
			b, err := json.Marshal(bench.Result{Workload: "chat-echo", Tool: "bidikit-engine", MessagesPerSec: mps})
			Expect(err).NotTo(HaveOccurred())
			Expect(os.WriteFile(filepath.Join(dir, name), b, 0o644)).To(Succeed())
			return name
		}
		old := []string{write("o1.json", 1000), write("o2.json", 1010), write("o3.json", 990)}
		faster := []string{write("f1.json", 1300), write("f2.json", 1310), write("f3.json", 1290)}
		same := []string{write("s1.json", 1005), write("s2.json", 980), write("s3.json", 1020)}

		code, stdout, stderr := runBidikit(ctx, dir, append(append(append([]string{"bench", "compare"}, old...), "--"), faster...)...)
		Expect(code).To(Equal(0), stderr)
		Expect(stdout).To(MatchRegexp(`messages_per_sec .* \+30\.0% +better \(p=0\.0\d\d\)`))
		Expect(stdout).To(ContainSubstring("significance: Welch's t-test"))

		code, stdout, stderr = runBidikit(ctx, dir, append(append(append([]string{"bench", "compare"}, old...), "--"), same...)...)
		Expect(code).To(Equal(0), stderr)
		Expect(stdout).To(MatchRegexp(`no significant difference \(p=0\.\d{3}\)`))

		code, stdout, stderr = runBidikit(ctx, dir, "bench", "compare", old[0], faster[0])
		Expect(code).To(Equal(0), stderr)
		Expect(stdout).To(ContainSubstring("cannot judge: 1 vs 1 runs (need 3 per side)"))
		Expect(stdout).NotTo(ContainSubstring("better"))
	}, SpecTimeout(time.Minute))
})

var _ = DescribeTable("a TLS/plaintext mismatch read off grpc's error text",
	func(msg string, usedTLS bool, want mismatch) {
		Expect(mismatchFromText(msg, usedTLS)).To(Equal(want))
	},
	Entry("TLS at a plaintext server", `connection error: desc = "transport: authentication handshake failed: tls: first record does not look like a TLS handshake"`, true, tlsToPlain),
	Entry("plaintext at a TLS server: frame too large", `connection error: desc = "error reading server preface: http2: frame too large"`, false, plainToTLS),
	Entry("plaintext at a TLS server: closed", `connection error: desc = "connection closed before server preface received"`, false, plainToTLS),
	Entry("a certificate problem is not a mismatch", `transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority`, true, noMismatch),
	Entry("a refused connection is not a mismatch", `dial tcp 127.0.0.1:1: connect: connection refused`, false, noMismatch),
)
