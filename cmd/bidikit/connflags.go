package main

import (
	"crypto/tls"
	"crypto/x509"
	"os"

	"github.com/spf13/pflag"
)

// connFlags is the connection vocabulary run, bench and workshop check
// share: the same names, types and meanings everywhere. Plaintext is the
// default everywhere (bidikit serve and the workshop servers speak
// plaintext); any --tls* flag dials with TLS, and --insecure says
// plaintext explicitly (it excludes every --tls* flag). One connFlags
// belongs to one command.
type connFlags struct {
	insecure      bool
	tls           bool
	tlsCA         string
	tlsCert       string
	tlsKey        string
	tlsServerName string
	tlsSkipVerify bool
	token         string
}

// connHelp is the paragraph each command's help gives the vocabulary.
const connHelp = `Connection: plaintext by default, as 'bidikit serve' and the workshop
servers speak it (--insecure says so explicitly). --tls dials with TLS and
verifies the server against the system's roots; --tls-ca FILE against the
CAs in FILE; --tls-server-name NAME checks the certificate for NAME;
--tls-cert/--tls-key FILE present a client certificate (mutual TLS);
--tls-skip-verify does not verify the server. Any --tls* flag means TLS.
A TLS client at a plaintext server (or the other way round) is named as
such, with the flag to change. --token T is the bearer token every client
presents.`

// registerTLS adds --insecure and the --tls* flags to fs.
func (c *connFlags) registerTLS(fs *pflag.FlagSet) {
	fs.BoolVar(&c.insecure, "insecure", false, "dial in plaintext (the default; excludes the --tls* flags)")
	fs.BoolVar(&c.tls, "tls", false, "dial with TLS, verifying the server against the system's roots (any --tls* flag implies it)")
	fs.StringVar(&c.tlsCA, "tls-ca", "", "PEM file of CA certificates to verify the server with (implies --tls)")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "PEM client certificate for mutual TLS, with --tls-key (implies --tls)")
	fs.StringVar(&c.tlsKey, "tls-key", "", "PEM client key for mutual TLS, with --tls-cert (implies --tls)")
	fs.StringVar(&c.tlsServerName, "tls-server-name", "", "server name to verify the certificate against, default the --target host (implies --tls)")
	fs.BoolVar(&c.tlsSkipVerify, "tls-skip-verify", false, "dial with TLS without verifying the server's certificate (implies --tls)")
}

// registerToken adds --token to fs with the command's own wording of who
// presents it.
func (c *connFlags) registerToken(fs *pflag.FlagSet, usage string) {
	fs.StringVar(&c.token, "token", "", usage)
}

// wantTLS reports whether any --tls* flag was given.
func (c *connFlags) wantTLS() bool {
	return c.tls || c.tlsCA != "" || c.tlsCert != "" || c.tlsKey != "" || c.tlsServerName != "" || c.tlsSkipVerify
}

// validate checks the combination without reading files.
func (c *connFlags) validate() error {
	if c.wantTLS() && c.insecure {
		return usagef("--insecure (plaintext) and the --tls* flags exclude each other: give one or the other")
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return usagef("--tls-cert and --tls-key go together")
	}
	if c.tlsSkipVerify && c.tlsCA != "" {
		return usagef("--tls-skip-verify and --tls-ca exclude each other: skip verification, or verify with the CA")
	}
	for flag, path := range map[string]string{"--tls-ca": c.tlsCA, "--tls-cert": c.tlsCert, "--tls-key": c.tlsKey} {
		if path == "" {
			continue
		}
		if st, err := os.Stat(path); err != nil {
			return usagef("%s %s: %v", flag, path, err)
		} else if st.IsDir() {
			return usagef("%s %s is a folder, want a PEM file", flag, path)
		}
	}
	return nil
}

// tlsConfig is nil for plaintext, else the TLS configuration the flags ask
// for; every problem is a usage error naming the flag.
func (c *connFlags) tlsConfig() (*tls.Config, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	if !c.wantTLS() {
		return nil, nil
	}
	cfg := &tls.Config{ServerName: c.tlsServerName, MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.tlsSkipVerify} //nolint:gosec // --tls-skip-verify is the user's explicit choice
	if c.tlsCA != "" {
		pem, err := os.ReadFile(c.tlsCA)
		if err != nil {
			return nil, usagef("--tls-ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usagef("--tls-ca %s: no PEM certificate in it", c.tlsCA)
		}
		cfg.RootCAs = pool
	}
	if c.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
		if err != nil {
			return nil, usagef("--tls-cert/--tls-key: %v", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// ghzFlagNames maps ghz's spellings, accepted by bench as hidden aliases,
// to bidikit's.
var ghzFlagNames = map[string]string{
	"cacert":  "tls-ca",
	"cert":    "tls-cert",
	"key":     "tls-key",
	"cname":   "tls-server-name",
	"skipTLS": "tls-skip-verify",
}

// ghzAliases is a pflag normalize function that reads ghz's flag names as
// bidikit's (bench keeps ghz's command lines working).
func ghzAliases(_ *pflag.FlagSet, name string) pflag.NormalizedName {
	if n, ok := ghzFlagNames[name]; ok {
		return pflag.NormalizedName(n)
	}
	return pflag.NormalizedName(name)
}
