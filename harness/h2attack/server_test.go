package h2attack_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// testServer is a grpc-go server on 127.0.0.1:0 whose every method is one
// handler (grpc.UnknownServiceHandler) that counts the streams it serves
// at once and writes up to sendBytes of 16 KiB messages before it waits
// for the stream's end: the attacks' counterpart, with the limits the
// reference sets (MaxConcurrentStreams 10 here, MaxHeaderListSize 16 KiB,
// keepalive enforcement MinTime 5s).
type testServer struct {
	addr      string
	active    atomic.Int64
	peak      atomic.Int64
	handled   atomic.Int64
	sent      atomic.Int64 // bytes the handlers' SendMsg accepted
	sendBytes int64
}

const testMaxStreams = 10

func startServer(sendBytes int64, tlsCfg *tls.Config) *testServer {
	s := &testServer{sendBytes: sendBytes}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	opts := []grpc.ServerOption{
		grpc.MaxConcurrentStreams(testMaxStreams),
		grpc.MaxHeaderListSize(16 << 10),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.UnknownServiceHandler(s.handle),
	}
	if tlsCfg != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	gs := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	var wg sync.WaitGroup
	wg.Go(func() { _ = gs.Serve(lis) })
	DeferCleanup(func() {
		gs.Stop()
		wg.Wait()
	})
	s.addr = lis.Addr().String()
	return s
}

func (s *testServer) handle(_ any, st grpc.ServerStream) error {
	n := s.active.Add(1)
	defer s.active.Add(-1)
	for {
		p := s.peak.Load()
		if n <= p || s.peak.CompareAndSwap(p, n) {
			break
		}
	}
	s.handled.Add(1)
	msg := make([]byte, 16<<10)
	for sent := int64(0); sent < s.sendBytes; sent += int64(len(msg)) {
		if err := st.SendMsg(wrapperspb.Bytes(msg)); err != nil {
			return err
		}
		s.sent.Add(int64(len(msg)))
	}
	<-st.Context().Done()
	return nil
}

// selfSigned returns a server TLS config for 127.0.0.1 and a client
// config trusting it.
func selfSigned() (server, client *tls.Config) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	Expect(err).NotTo(HaveOccurred())
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "h2attack test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	Expect(err).NotTo(HaveOccurred())
	cert, err := x509.ParseCertificate(der)
	Expect(err).NotTo(HaveOccurred())
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

// attackPath is the method the attacks' streams ask for: the counting
// handler serves it.
const attackPath = "/test.Attack/Stream"

// serving asks the server's health service over a fresh connection: the
// server keeps serving honest clients after an attack.
func serving(ctx context.Context, addr string, tlsClient *tls.Config) (healthpb.HealthCheckResponse_ServingStatus, error) {
	creds := insecure.NewCredentials()
	if tlsClient != nil {
		creds = credentials.NewTLS(tlsClient)
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return 0, err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return 0, err
	}
	return resp.Status, nil
}
