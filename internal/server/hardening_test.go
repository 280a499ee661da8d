package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ternhq/tern/internal/testserver"
)

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns
// their paths and a pool trusting the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tern test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	cfg := testserver.Config(t.TempDir())
	cfg.TLSCert, cfg.TLSKey = certFile, keyFile
	s := testserver.Start(t, cfg)
	if !strings.HasPrefix(s.URL(), "https://") {
		t.Fatalf("URL %s", s.URL())
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	req, _ := http.NewRequest("GET", s.URL()+"/v1/functions", nil)
	req.Header.Set("Authorization", "Bearer "+s.Token())
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Errorf("over TLS: %d %s", resp.StatusCode, body)
	}
	// Plain HTTP to the TLS port gets nothing useful.
	resp, err = http.Get("http://" + s.Addr() + "/healthz")
	if err == nil {
		if resp.StatusCode == 200 {
			t.Error("plain HTTP was served")
		}
		resp.Body.Close()
	}
}

// TestSlowClientsAreCut: a client that sends its headers or body too
// slowly loses its connection instead of holding it.
func TestSlowClientsAreCut(t *testing.T) {
	cfg := testserver.Config(t.TempDir())
	cfg.ReadTimeout = time.Second
	s := testserver.Start(t, cfg)
	s.Deploy(fn("x", "index.handler", map[string]string{"index.js": `exports.handler = async () => "ok";`}))
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Headers promise 100 bytes; 5 come, then nothing.
	if _, err := io.WriteString(conn, "POST /fn/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhello"); err != nil {
		t.Fatal(err)
	}
	// Held, the connection would last until the test's read deadline.
	const held = 30 * time.Second
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(held))
	_, err = io.ReadAll(conn)
	if d := time.Since(start); err != nil || d >= held {
		t.Errorf("the connection stayed %v (err %v), want it closed after about 1 s", d, err)
	}
}
